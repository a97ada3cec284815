// Drive the Uppy test page in headless Chromium (Debian's, never a downloaded browser).
//
//   node uppy_browser.mjs PAGE_URL --files FILE... [--folder DIR] [--timeout-ms N]
//
// Opens PAGE_URL (uppy_page.html with ?endpoint=…&token=…), chooses FILEs in the page's
// <input type=file multiple> and DIR in its <input type=file webkitdirectory> (so the
// browser gives each of DIR's files a webkitRelativePath "DIR-name/sub/…"), starts the
// upload and waits for Uppy's `complete` event.
//
// Prints one JSON line on stdout: {"added": [...], "result": {"successful", "failed",
// "errors"}, "console": [...], "pageErrors": [...], "requestFailures": [...]}.
// Exit 0 when every file succeeded, 1 otherwise (the JSON is printed either way, when
// the page got that far), 2 on a usage or browser error.

import process from 'node:process'
import { argumentsOrExit, launchChromium } from './chromium.mjs'

function parseArgs(argv) {
  const args = { pageUrl: null, files: [], folder: null, timeoutMs: 60000 }
  let list = null
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--files') list = args.files
    else if (arg === '--folder') { args.folder = argv[++i]; list = null }
    else if (arg === '--timeout-ms') { args.timeoutMs = Number(argv[++i]); list = null }
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`)
    else if (list !== null) list.push(arg)
    else if (args.pageUrl === null) args.pageUrl = arg
    else throw new Error(`unexpected argument ${arg}`)
  }
  if (args.pageUrl === null || args.files.length === 0) {
    throw new Error('usage: uppy_browser.mjs PAGE_URL --files FILE... [--folder DIR]')
  }
  return args
}

async function run(args) {
  const browser = await launchChromium()
  const report = { added: [], result: null, console: [], pageErrors: [], requestFailures: [] }
  try {
    const page = await browser.newPage()
    page.setDefaultTimeout(args.timeoutMs)
    page.on('console', (message) => report.console.push(`${message.type()}: ${message.text()}`))
    page.on('pageerror', (error) => report.pageErrors.push(String(error)))
    page.on('requestfailed', (request) => {
      report.requestFailures.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText}`)
    })
    await page.goto(args.pageUrl)
    await page.waitForFunction(() => document.getElementById('status').textContent === 'ready')
    await page.setInputFiles('#files', args.files)
    if (args.folder !== null) await page.setInputFiles('#folder', args.folder)
    report.added = await page.evaluate(() => window.uppyTest.files())
    report.result = await page.evaluate(() => window.uppyTest.upload())
  } finally {
    await browser.close()
  }
  return report
}

const args = argumentsOrExit(parseArgs)
try {
  const report = await run(args)
  process.stdout.write(`${JSON.stringify(report)}\n`)
  const ok = report.result.failed.length === 0 && report.result.successful.length === report.added.length
  process.exit(ok ? 0 : 1)
} catch (error) {
  process.stderr.write(`browser run failed: ${error?.stack ?? error}\n`)
  process.exit(2)
}
