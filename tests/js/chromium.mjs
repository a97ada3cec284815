// Debian's Chromium for the browser tests (never a downloaded browser), and the way the
// driver scripts read their arguments.

import process from 'node:process'
import { chromium } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** A headless Chromium with a fresh temporary profile of its own, removed on close. */
export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync',
    ],
  })
}

/** parse(argv) for this process, or exit 2 with its message on a usage error. */
export function argumentsOrExit(parse) {
  try {
    return parse(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`${error.message}\n`)
    process.exit(2)
  }
}
