// Answer calls to the page's path helpers (web/src/paths.js), one JSON line each way:
//   {"fn": "destinationFolder", "args": ["inbox", "/top/x.bin"]}  ->  {"result": "inbox/top"}
// so that Python tests can hold them against the server's own rules.

import process from 'node:process'
import { createInterface } from 'node:readline'
import * as paths from '../../web/src/paths.js'

for await (const line of createInterface({ input: process.stdin })) {
  let answer
  try {
    const { fn, args } = JSON.parse(line)
    answer = { result: paths[fn](...args) }
  } catch (error) {
    answer = { error: String(error) }
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`)
}
