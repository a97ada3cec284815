// The test page's script, bundled by esbuild at test time (uppy_page.bundle.js).
//
// Query parameters: endpoint (tus server URL), token, parallelUploads (default 1).
// Files chosen in #files and #folder are added to Uppy the way Uppy's own Dashboard and
// FileInput plugins add them: a folder's files carry their `webkitRelativePath` as
// the `relativePath` meta, which @uppy/tus sends as Upload-Metadata.
// window.uppyTest.upload() starts the upload and resolves with the `complete` result.

import Uppy from '@uppy/core'
import Tus from '@uppy/tus'

const params = new URLSearchParams(window.location.search)
const uppy = new Uppy({ autoProceed: false, debug: false })
uppy.use(Tus, {
  endpoint: params.get('endpoint'),
  headers: { Authorization: `Bearer ${params.get('token')}` },
  parallelUploads: Number(params.get('parallelUploads') ?? '1'),
  retryDelays: [0, 500, 1000],
  limit: 4,
})

const errors = []
uppy.on('upload-error', (file, error) => {
  errors.push({ name: file?.name, relativePath: file?.meta?.relativePath ?? null, error: String(error) })
})
uppy.on('error', (error) => errors.push({ error: String(error) }))

function addInputFiles(input) {
  for (const file of input.files) {
    uppy.addFile({
      source: input.id,
      name: file.name,
      type: file.type,
      data: file,
      meta: { relativePath: file.relativePath || file.webkitRelativePath || null },
    })
  }
  input.value = ''
}

for (const id of ['files', 'folder']) {
  const input = document.getElementById(id)
  input.addEventListener('change', () => addInputFiles(input))
}

function describe(file) {
  return {
    name: file.name,
    size: file.size,
    relativePath: file.meta.relativePath ?? null,
    uploadURL: file.uploadURL ?? file.tus?.uploadUrl ?? null,
    error: file.error ?? null,
  }
}

window.uppyTest = {
  uppy,
  files: () => uppy.getFiles().map(describe),
  upload: () =>
    new Promise((resolve) => {
      uppy.once('complete', (result) => {
        resolve({
          successful: (result.successful ?? []).map(describe),
          failed: (result.failed ?? []).map(describe),
          errors,
        })
      })
      uppy.upload().catch((error) => errors.push({ error: String(error) }))
    }),
}
document.getElementById('status').textContent = 'ready'
