// Uppy's Dashboard, inline on the page, sending files to the tus endpoint into the folder
// being viewed.

import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'
import { defaultOptions as tusDefaults } from 'tus-js-client'
import { firstLine } from './api.js'
import { destinationFolder, folderLabel } from './paths.js'

// Files at least this big go up in parallel parts joined by the server (tus
// concatenation): several connections carry more than one on a long, lossy path. The
// server copies the parts once more when it joins them, so small files go in one piece.
export const PARALLEL_FROM_BYTES = 64 * 1024 * 1024
export const PARALLEL_PARTS = 4
const FILES_AT_ONCE = 3

/**
 * tus-js-client's localStorage URL store, with keys scoped to a user and a destination
 * folder. Uppy's fingerprint of a file says nothing of where it goes, so without the
 * scope a file re-added in another folder (or by another user of the browser) would
 * resume the old upload, which lands where the old one was meant to.
 */
class ScopedUrlStorage {
  constructor(scope) {
    this.prefix = `${encodeURIComponent(scope)}::`
    this.store = tusDefaults.urlStorage
  }

  findAllUploads() {
    return this.store.findAllUploads()
  }

  findUploadsByFingerprint(fingerprint) {
    return this.store.findUploadsByFingerprint(this.prefix + fingerprint)
  }

  removeUpload(key) {
    return this.store.removeUpload(key)
  }

  addUpload(fingerprint, upload) {
    return this.store.addUpload(this.prefix + fingerprint, upload)
  }
}

/** The server's one-line reason for a failed upload, else the client's message. */
function uploadFailure(error, response) {
  const text = response?.body?.xhr?.responseText ?? error?.originalResponse?.getBody?.()
  const line = typeof text === 'string' ? firstLine(text) : ''
  return line || error?.message || String(error)
}

/**
 * options: target (element), endpoint (tus URL), headers() (credentials), user, maxSize,
 * folder() (the folder being viewed), onUploaded(), messages.
 */
export function createUploader({ target, endpoint, headers, user, maxSize, folder, onUploaded, messages }) {
  const uppy = new Uppy({
    id: 'staging',
    autoProceed: false,
    restrictions: { maxFileSize: maxSize ?? null },
    // Uppy's default refuses a file already in the list; the page also fixes where each
    // file goes at the moment it is added.
    onBeforeFileAdded: (file, files) => {
      if (Object.hasOwn(files, file.id)) return false
      const destPath = destinationFolder(folder(), file.meta.relativePath)
      const big = (file.size ?? 0) >= PARALLEL_FROM_BYTES
      return {
        ...file,
        meta: { ...file.meta, destPath },
        tus: {
          parallelUploads: big ? PARALLEL_PARTS : 1,
          urlStorage: new ScopedUrlStorage(`${user}/${destPath}`),
        },
      }
    },
  })
  const dashboard = {
    inline: true,
    target,
    width: '100%',
    height: window.matchMedia('(max-width: 40rem)').matches ? 320 : 380,
    fileManagerSelectionType: 'both',
    proudlyDisplayPoweredByUppy: false,
    note: noteFor(folder()),
  }
  uppy.use(Dashboard, dashboard)
  uppy.use(Tus, {
    endpoint,
    headers: () => headers(),
    limit: FILES_AT_ONCE,
    // A finished upload is forgotten: the same file added again is a new upload, not a
    // "resume" that would end at once without writing anything.
    removeFingerprintOnSuccess: true,
    // filename and filetype are copied from name and type by @uppy/tus.
    allowedMetaFields: ['name', 'type', 'destPath'],
  })
  uppy.on('upload-success', () => onUploaded())
  uppy.on('upload-error', (file, error, response) => {
    messages.error(`Upload of ${file?.name ?? 'a file'} failed: ${uploadFailure(error, response)}`)
  })
  uppy.on('restriction-failed', (file, error) => {
    messages.error(`${file?.name ?? 'A file'} was not added: ${error.message}`)
  })

  return {
    uppy,
    /** Say where new files will go; call when the viewed folder changes. */
    showFolder(name) {
      uppy.getPlugin('Dashboard').setOptions({ note: noteFor(name) })
    },
  }
}

function noteFor(folder) {
  return `Files you add go to ${folderLabel(folder, { rooted: true })}`
}
