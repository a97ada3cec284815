// What a page of another origin can make a browser send to the server, and what a page of
// the server's own origin can do, in Debian's headless Chromium.
//
//   node csrf_browser.mjs ATTACK_PAGE_URL SERVER_URL
//
// Opens ATTACK_PAGE_URL (a page on another origin whose attack() posts a form, fires a
// no-cors fetch and tries a DELETE at the server) and waits for attack() to finish; then
// opens SERVER_URL/healthz (the server's own origin) and POSTs /mkdir/same-origin from it.
// Prints one JSON line: {"attack": {...}, "sameOrigin": STATUS, "pageErrors": [...]}.

import process from 'node:process'
import { launchChromium } from './chromium.mjs'

const [attackUrl, serverUrl] = process.argv.slice(2)
if (!attackUrl || !serverUrl) {
  process.stderr.write('usage: csrf_browser.mjs ATTACK_PAGE_URL SERVER_URL\n')
  process.exit(2)
}

const browser = await launchChromium()
const report = { attack: null, sameOrigin: null, pageErrors: [] }
try {
  const page = await browser.newPage()
  page.setDefaultTimeout(30000)
  page.on('pageerror', (error) => report.pageErrors.push(String(error)))
  await page.goto(attackUrl)
  report.attack = await page.evaluate(() => window.attack())
  await page.goto(`${serverUrl}/healthz`)
  report.sameOrigin = await page.evaluate(
    async () => (await fetch('/mkdir/same-origin', { method: 'POST' })).status,
  )
} finally {
  await browser.close()
}
process.stdout.write(`${JSON.stringify(report)}\n`)
