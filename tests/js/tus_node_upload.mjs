// Upload one file with tus-js-client from Node, as a user's own program would.
//
//   node tus_node_upload.mjs ENDPOINT TOKEN FILE PARALLEL_UPLOADS CHUNK_SIZE [options]
//
// CHUNK_SIZE is in bytes; 0 means one PATCH per upload (tus-js-client's default, Infinity).
// PARALLEL_UPLOADS > 1 splits the file into partial uploads and concatenates them with a
// final upload (the tus concatenation extension).
//
// Options:
//   --dest-path DIR          `destPath` metadata (directory under the user's area)
//   --filename NAME          `filename` metadata (default: the file's base name)
//   --url-storage PATH       keep upload URLs in this file (tus.FileUrlStorage), for resuming
//   --abort-after FRACTION   abort (upload.abort(), no termination) once progress > FRACTION
//   --resume                 find the previous upload of this file in --url-storage and
//                            resume it (exit 3 if there is none)
//   --protocol NAME          tus-js-client's protocol option: tus-v1 (default),
//                            ietf-draft-03 or ietf-draft-05
//   --upload-data-during-creation   send the first chunk with the creation request
//   --buffer                 upload the file read into a Buffer, not a stream of its path
//                            (tus-js-client 4.3.1 tells the end of a path's content wrongly:
//                            its last IETF append of several says Upload-Complete: ?0)
//
// On success prints one JSON line on stdout: {"url", "firstProgress", "lastProgress",
// "resumedFrom", "aborted", "previousUploads"} and exits 0; on error prints the error on
// stderr and exits 1.

import fs from 'node:fs'
import path from 'node:path'
import process from 'node:process'
import * as tus from 'tus-js-client'

function parseArgs(argv) {
  const positional = []
  const options = {
    destPath: null,
    filename: null,
    urlStorage: null,
    abortAfter: null,
    resume: false,
    protocol: 'tus-v1',
    uploadDataDuringCreation: false,
    buffer: false,
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`)
      return argv[++i]
    }
    if (arg === '--dest-path') options.destPath = value()
    else if (arg === '--filename') options.filename = value()
    else if (arg === '--url-storage') options.urlStorage = value()
    else if (arg === '--abort-after') options.abortAfter = Number(value())
    else if (arg === '--resume') options.resume = true
    else if (arg === '--protocol') options.protocol = value()
    else if (arg === '--upload-data-during-creation') options.uploadDataDuringCreation = true
    else if (arg === '--buffer') options.buffer = true
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`)
    else positional.push(arg)
  }
  if (positional.length !== 5) {
    throw new Error('usage: tus_node_upload.mjs ENDPOINT TOKEN FILE PARALLEL_UPLOADS CHUNK_SIZE [options]')
  }
  const [endpoint, token, file, parallel, chunk] = positional
  const chunkSize = Number(chunk)
  return {
    endpoint,
    token,
    file,
    parallelUploads: Number(parallel),
    chunkSize: chunkSize > 0 ? chunkSize : Infinity,
    ...options,
  }
}

function upload(args) {
  return new Promise((resolve, reject) => {
    const report = {
      url: null,
      firstProgress: null,
      lastProgress: null,
      resumedFrom: null,
      aborted: false,
      previousUploads: 0,
    }
    const metadata = { filename: args.filename ?? path.basename(args.file) }
    if (args.destPath !== null) metadata.destPath = args.destPath
    const options = {
      endpoint: args.endpoint,
      headers: { Authorization: `Bearer ${args.token}` },
      metadata,
      chunkSize: args.chunkSize,
      parallelUploads: args.parallelUploads,
      protocol: args.protocol,
      uploadDataDuringCreation: args.uploadDataDuringCreation,
      retryDelays: [0, 500, 1000, 2000],
      onProgress(bytesSent, bytesTotal) {
        if (report.firstProgress === null) report.firstProgress = bytesSent
        report.lastProgress = bytesSent
        if (args.abortAfter !== null && !report.aborted && bytesSent > args.abortAfter * bytesTotal) {
          report.aborted = true
          report.url = upload.url
          // abort(false): stop sending, keep the upload on the server for a later resume.
          upload.abort(false).then(() => resolve(report), reject)
        }
      },
      onError: reject,
      onSuccess() {
        report.url = upload.url
        resolve(report)
      },
    }
    if (args.urlStorage !== null) options.urlStorage = new tus.FileUrlStorage(args.urlStorage)
    const input = args.buffer ? fs.readFileSync(args.file) : fs.createReadStream(args.file)
    const upload = new tus.Upload(input, options)

    if (!args.resume) {
      upload.start()
      return
    }
    upload.findPreviousUploads().then((previous) => {
      report.previousUploads = previous.length
      if (previous.length === 0) {
        const error = new Error(`no previous upload of ${args.file} in ${args.urlStorage}`)
        error.exitCode = 3
        reject(error)
        return
      }
      upload.resumeFromPreviousUpload(previous[0])
      report.resumedFrom = previous[0].uploadUrl
      upload.start()
    }, reject)
  })
}

try {
  const report = await upload(parseArgs(process.argv.slice(2)))
  process.stdout.write(`${JSON.stringify(report)}\n`)
  // An aborted upload can leave a keep-alive socket open: do not wait for it.
  process.exit(0)
} catch (error) {
  process.stderr.write(`tus upload failed: ${error?.stack ?? error}\n`)
  process.exit(error?.exitCode ?? 1)
}
