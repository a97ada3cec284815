// Drive the server's own page (GET /) in headless Chromium, as a person would.
//
//   node page_browser.mjs PAGE_URL --token T --files A B --folder DIR --big FILE
//                         [--refused FILE] --out DIR
//   node page_browser.mjs PAGE_URL --single-user --files A B
//
// Signs in (a wrong token first), makes a folder and opens it, uploads the files and the
// folder with Uppy's Dashboard, tries the file whose name the server refuses, starts the
// big file, reloads the page mid-upload, adds the
// big file again (the upload resumes), opens one file's details, downloads it, renames
// one file (and fails to rename another onto it), deletes one (after cancelling once),
// takes screenshots at desktop and phone sizes into --out, and signs out.
//
// At each checkpoint it prints {"checkpoint": NAME, ...} on stdout and waits for a line
// on stdin, so that the test can look at the server meanwhile. The last line is the
// report: {"report": {...}}. Exit 0 when the script ran to its end, 1 otherwise.

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import process from 'node:process'
import { createInterface } from 'node:readline'
import { argumentsOrExit, launchChromium } from './chromium.mjs'

const DESKTOP = { width: 1280, height: 860 }
const PHONE = { width: 390, height: 844 }

function parseArgs(argv) {
  const args = { files: [], timeoutMs: 60000 }
  let list = null
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--files') list = args.files
    else if (arg === '--single-user') { args.singleUser = true; list = null }
    else if (['--token', '--folder', '--big', '--refused', '--out', '--timeout-ms'].includes(arg)) {
      args[arg.slice(2).replace(/-(.)/g, (_, c) => c.toUpperCase())] = argv[++i]
      list = null
    } else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`)
    else if (list !== null) list.push(arg)
    else args.pageUrl = arg
  }
  const required = args.singleUser ? ['pageUrl'] : ['pageUrl', 'token', 'folder', 'big', 'out']
  for (const name of required) {
    if (!args[name]) throw new Error(`missing ${name}`)
  }
  args.timeoutMs = Number(args.timeoutMs)
  return args
}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()

async function checkpoint(name, data = {}) {
  process.stdout.write(`${JSON.stringify({ checkpoint: name, ...data })}\n`)
  const answer = await stdinLines.next()
  if (answer.done || answer.value.trim() !== 'go') throw new Error(`stopped at checkpoint ${name}`)
}

const row = (page, relative) => page.locator(`#listing tbody tr[data-path="${relative}"]`)

async function waitForRow(page, relative) {
  await row(page, relative).waitFor({ state: 'visible' })
}

/** Answer the page's <dialog id="ask">: type `value` (if given) and confirm, or cancel. */
async function answerAsk(page, { value, cancel = false }) {
  const dialog = page.locator('#ask')
  await dialog.waitFor({ state: 'visible' })
  if (cancel) {
    await dialog.locator('.ask-cancel').click()
  } else {
    if (value !== undefined) await dialog.locator('input').fill(value)
    await dialog.locator('.ask-confirm').click()
  }
  await dialog.waitFor({ state: 'hidden' })
}

/** The Dashboard's file inputs are on its "add files" view: open it when files are listed. */
async function dashboardInput(page, selector) {
  const input = page.locator(`.uppy-Dashboard-input${selector}`).first()
  if ((await input.count()) === 0) await page.locator('.uppy-DashboardContent-addMore').click()
  return input
}

async function chooseFiles(page, files) {
  await (await dashboardInput(page, ':not([webkitdirectory])')).setInputFiles(files)
}

async function chooseFolder(page, folder) {
  await (await dashboardInput(page, '[webkitdirectory]')).setInputFiles(folder)
}

async function startUpload(page) {
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
}

async function waitUploadsComplete(page) {
  await page.locator('.uppy-StatusBar.is-complete').waitFor({ state: 'attached' })
}

/** Uploads the browser remembers for resuming (tus-js-client's entries in localStorage). */
function storedUploads(page) {
  return page.evaluate(() =>
    Object.keys(localStorage)
      .filter((key) => key.startsWith('tus::'))
      .map((key) => ({ key, ...JSON.parse(localStorage.getItem(key)) })),
  )
}

async function withPage(args, report, scenario) {
  const browser = await launchChromium()
  try {
    const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true })
    const page = await context.newPage()
    page.setDefaultTimeout(args.timeoutMs)
    page.on('console', (message) => {
      // Chromium logs every refused request, and Uppy every failed upload: the 400, 401s and
      // 409 are this script's doing.
      const expected = /^Failed to load resource: the server responded with a status of (400|401|409) |^\[Uppy\] .* response code: 400,/
      if (['error', 'warning'].includes(message.type()) && !expected.test(message.text())) {
        report.console.push(`${message.type()}: ${message.text()}`)
      }
    })
    page.on('pageerror', (error) => report.pageErrors.push(String(error)))
    page.on('request', (request) => report.origins.add(new URL(request.url()).origin))
    await scenario(page, args, report)
  } finally {
    await browser.close()
  }
}

/** Single-user mode: no sign-in; files go to the home folder; a folder made and deleted. */
async function singleUser(page, args, report) {
  await page.goto(args.pageUrl)
  await page.locator('#workspace').waitFor({ state: 'visible' })
  report.account = await page.locator('#account').innerText()
  report.signOutShown = await page.locator('#sign-out').isVisible()
  await chooseFiles(page, args.files)
  await startUpload(page)
  await waitUploadsComplete(page)
  for (const file of args.files) await waitForRow(page, path.basename(file))
  await page.locator('#new-folder').click()
  await answerAsk(page, { value: 'made here' })
  await waitForRow(page, 'made here')
  await row(page, 'made here').locator('button.delete').click()
  report.deleteQuestion = await page.locator('#ask .ask-text').textContent()
  await answerAsk(page, {})
  await row(page, 'made here').waitFor({ state: 'detached' })
  report.listed = await page.locator('#listing tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.path))
}

/** A tokens-file server: the whole tour (see the top of this file). */
async function tokenSession(page, args, report) {
  // Sign in: a wrong token is refused with the server's reason, the right one works.
  await page.goto(args.pageUrl)
  await page.locator('#sign-in').waitFor({ state: 'visible' })
  await page.locator('#token').fill('not-a-token')
  await page.locator('#sign-in button[type="submit"]').click()
  await page.locator('#sign-in-error:not(:empty)').waitFor()
  report.wrongTokenMessage = await page.locator('#sign-in-error').textContent()
  await page.locator('#token').fill(args.token)
  await page.locator('#sign-in button[type="submit"]').click()
  await page.locator('#workspace').waitFor({ state: 'visible' })
  report.signedInAs = await page.locator('#account-user').textContent()

  // A folder, opened; uploads go there.
  await page.locator('#new-folder').click()
  await answerAsk(page, { value: 'inbox' })
  await waitForRow(page, 'inbox')
  await row(page, 'inbox').locator('a.entry-name').click()
  await page.locator('#breadcrumbs [aria-current="page"]', { hasText: 'inbox' }).waitFor()
  report.hashInInbox = await page.evaluate(() => location.hash)

  // Two files and a folder.
  await chooseFiles(page, args.files)
  await chooseFolder(page, args.folder)
  await startUpload(page)
  await waitUploadsComplete(page)
  const folderName = path.basename(args.folder)
  for (const file of args.files) await waitForRow(page, `inbox/${path.basename(file)}`)
  await waitForRow(page, `inbox/${folderName}`)
  report.listedAfterUpload = await page.locator('#listing tbody tr').evaluateAll((rows) =>
    rows.map((r) => ({ path: r.dataset.path, kind: r.dataset.kind, size: r.querySelector('.size').textContent })),
  )
  await checkpoint('uploaded')
  await page.locator('.uppy-StatusBar-actionBtn--done').click()

  // A name the server refuses: its reason appears as a message.
  if (args.refused) {
    await chooseFiles(page, [args.refused])
    await startUpload(page)
    const failed = page.locator('#messages .message-error', { hasText: 'Upload of' })
    await failed.waitFor()
    report.uploadRefusal = await failed.locator('span').textContent()
    await failed.locator('.message-dismiss').click()
    // Uppy's big single-file preview lies over the remove button: the keyboard reaches it.
    await page.locator('.uppy-Dashboard-Item-action--remove').focus()
    await page.keyboard.press('Enter')
    await page.locator('.uppy-Dashboard-AddFiles').waitFor()
  }

  // The big file: reload mid-upload, add it again, and it resumes.
  await chooseFiles(page, [args.big])
  await startUpload(page)
  await page.waitForFunction(
    () => Number(document.querySelector('.uppy-StatusBar [role="progressbar"]')?.getAttribute('aria-valuenow') ?? 0) >= 40,
    null,
    { polling: 50 },
  )
  await page.screenshot({ path: path.join(args.out, 'page-uploading-desktop.png') })
  const before = await storedUploads(page)
  await page.reload()
  await page.locator('#workspace').waitFor({ state: 'visible' })
  await waitForRow(page, `inbox/${folderName}`) // the same folder, from the location hash
  await checkpoint('reloaded', { stored: before })
  await chooseFiles(page, [args.big])
  await startUpload(page)
  await waitUploadsComplete(page)
  await waitForRow(page, `inbox/${path.basename(args.big)}`)
  report.storedAfterResume = await storedUploads(page)
  await checkpoint('resumed')

  // Details of one file: its metadata record.
  const first = `inbox/${path.basename(args.files[0])}`
  await row(page, first).locator('.entry-name').click()
  const md5 = page.locator('#details dd[data-field="MD5"]')
  await md5.waitFor()
  report.detailsMd5 = await md5.textContent()
  report.details = await page.locator('#details dd').evaluateAll((items) =>
    Object.fromEntries(items.map((item) => [item.dataset.field, item.textContent])),
  )
  report.detailsHead = await page.locator('#details .details-head').textContent()
  report.detailsTail = await page.locator('#details .details-tail').textContent()
  await page.screenshot({ path: path.join(args.out, 'page-details-desktop.png') })
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('#details .details-download a').click(),
  ])
  const saved = path.join(args.out, 'downloaded.bin')
  await download.saveAs(saved)
  report.downloadedMd5 = createHash('md5').update(readFileSync(saved)).digest('hex')
  report.downloadName = download.suggestedFilename()
  await page.locator('#details .details-close').click()

  // Rename; a rename onto an existing name is refused with the server's reason.
  const second = `inbox/${path.basename(args.files[1])}`
  await row(page, second).locator('button.rename').click()
  report.renamePrefill = await page.locator('#ask input').inputValue()
  await answerAsk(page, { value: 'inbox/renamed.dat' })
  await waitForRow(page, 'inbox/renamed.dat')
  await row(page, first).locator('button.rename').click()
  await answerAsk(page, { value: 'inbox/renamed.dat' })
  const refusal = page.locator('#messages .message-error').first()
  await refusal.waitFor()
  report.renameRefusal = await refusal.locator('span').textContent()

  // Delete: cancelled once (nothing happens), then confirmed.
  await row(page, 'inbox/renamed.dat').locator('button.delete').click()
  await answerAsk(page, { cancel: true })
  await row(page, 'inbox/renamed.dat').locator('button.delete').click()
  report.deleteQuestion = await page.locator('#ask .ask-text').textContent()
  await answerAsk(page, {})
  await row(page, 'inbox/renamed.dat').waitFor({ state: 'detached' })
  await checkpoint('edited')

  // Screenshots: desktop and phone size (the Dashboard re-lays itself out on resize).
  const dismiss = page.locator('#messages .message-dismiss')
  while ((await dismiss.count()) > 0) await dismiss.first().click()
  await page.locator('.uppy-StatusBar-actionBtn--done').click()
  await page.screenshot({ path: path.join(args.out, 'page-desktop.png'), fullPage: true })
  await page.setViewportSize(PHONE)
  await page.waitForTimeout(300)
  await page.screenshot({ path: path.join(args.out, 'page-phone.png'), fullPage: true })
  report.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
  await page.setViewportSize(DESKTOP)

  // Keyboard: Tab goes from the toolbar through the uploader to the listing's controls,
  // and the focused control shows it.
  await page.locator('#new-folder').focus()
  report.keyboard = []
  for (let step = 0; step < 60; step++) {
    await page.keyboard.press('Tab')
    const focused = await page.evaluate(() => {
      const el = document.activeElement
      return {
        text: el.getAttribute('aria-label') ?? el.textContent.trim().slice(0, 40),
        inListing: Boolean(el.closest('#listing')),
        outline: getComputedStyle(el).outlineStyle,
      }
    })
    report.keyboard.push(focused)
    if (focused.inListing) break
  }

  // The token is revoked while the page is open: the next request asks to sign in again,
  // and signing in again starts afresh.
  await checkpoint('revoke')
  await page.locator('#refresh').click()
  await page.locator('#sign-in').waitFor({ state: 'visible' })
  report.sessionEndedMessage = await page.locator('#sign-in-error').textContent()
  await checkpoint('restore')
  await page.locator('#token').fill(args.token)
  await page.locator('#sign-in button[type="submit"]').click()
  await page.locator('#workspace').waitFor({ state: 'visible' })
  await waitForRow(page, 'inbox/notes.txt')

  // Sign out: back to the form, the token gone from the tab.
  await page.locator('#sign-out').click()
  await page.locator('#sign-in').waitFor({ state: 'visible' })
  report.tokenAfterSignOut = await page.evaluate(() => sessionStorage.getItem('tus-staging.token'))
}

const args = argumentsOrExit(parseArgs)
const report = { console: [], pageErrors: [], origins: new Set() }
let failure = null
try {
  await withPage(args, report, args.singleUser ? singleUser : tokenSession)
} catch (error) {
  failure = String(error?.stack ?? error)
}
report.origins = [...report.origins]
report.failure = failure
process.stdout.write(`${JSON.stringify({ report })}\n`)
process.exit(failure === null ? 0 : 1)
