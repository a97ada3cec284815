// Build the staging page into the Python package (tus_staging/web/ by default):
//
//   node build.mjs [--out DIR]
//
// DIR/index.html       the page, naming its assets by content hash
// DIR/assets/          main-HASH.js and main-HASH.css (esbuild, minified), the favicon and
//                      licences-HASH.txt: the licence of every npm package in the bundle
//
// The output depends only on the sources and the locked packages, so rebuilding a clean
// checkout gives the committed files byte for byte.

import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import process from 'node:process'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const SOURCES = path.join(HERE, 'src')

function outputDir() {
  const at = process.argv.indexOf('--out')
  return path.resolve(at === -1 ? path.join(HERE, '..', 'tus_staging', 'web') : process.argv[at + 1])
}

function hashed(name, content) {
  const digest = createHash('sha256').update(content).digest('hex').slice(0, 10)
  const ext = path.extname(name)
  return `${path.basename(name, ext)}-${digest}${ext}`
}

/** The package directory (under node_modules) that holds a bundled input file. */
function packageDirOf(input) {
  const parts = input.split('/')
  const at = parts.lastIndexOf('node_modules')
  if (at === -1) return null
  const length = parts[at + 1].startsWith('@') ? 2 : 1
  return parts.slice(0, at + 1 + length).join('/')
}

function licenceText(dir) {
  const file = readdirSync(path.join(HERE, dir)).find((name) => /^(licen[cs]e|copying)/i.test(name))
  return file ? readFileSync(path.join(HERE, dir, file), 'utf8').trim() : null
}

/** One text with the name, version, licence and licence text of each bundled package. */
function licences(inputs) {
  const dirs = [...new Set(inputs.map(packageDirOf).filter(Boolean))]
  const packages = dirs.map((dir) => {
    const meta = JSON.parse(readFileSync(path.join(HERE, dir, 'package.json'), 'utf8'))
    return { name: meta.name, version: meta.version, licence: meta.license, text: licenceText(dir) }
  })
  packages.sort((a, b) => a.name.localeCompare(b.name))
  const sections = packages.map(({ name, version, licence, text }) =>
    [`${name} ${version} (${licence})`, text ?? `Licensed under ${licence}; the package ships no licence file.`].join('\n\n'),
  )
  return `Third-party software in the staging page's bundle\n\n${sections.join(`\n\n${'-'.repeat(72)}\n\n`)}\n`
}

async function build() {
  const out = outputDir()
  const result = await esbuild.build({
    absWorkingDir: HERE,
    entryPoints: { main: path.join(SOURCES, 'main.js') },
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
    legalComments: 'none', // collected, whole, into the licences file instead
    metafile: true,
    write: false,
    outdir: 'assets',
    logLevel: 'warning',
  })
  const files = {}
  for (const file of result.outputFiles) {
    const name = path.basename(file.path)
    files[name] = { name: hashed(name, file.contents), content: file.contents }
  }
  const favicon = readFileSync(path.join(SOURCES, 'favicon.svg'))
  files['favicon.svg'] = { name: hashed('favicon.svg', favicon), content: favicon }
  const legal = Buffer.from(licences(Object.keys(result.metafile.inputs)))
  files['licenses.txt'] = { name: hashed('licenses.txt', legal), content: legal }

  let page = readFileSync(path.join(SOURCES, 'index.html'), 'utf8')
  for (const [name, file] of Object.entries(files)) page = page.replaceAll(`{{${name}}}`, file.name)
  const unfilled = page.match(/\{\{[^}]*\}\}/)
  if (unfilled) throw new Error(`index.html names an asset the build did not make: ${unfilled[0]}`)

  const assets = path.join(out, 'assets')
  if (existsSync(assets)) rmSync(assets, { recursive: true })
  mkdirSync(assets, { recursive: true })
  for (const file of Object.values(files)) writeFileSync(path.join(assets, file.name), file.content)
  writeFileSync(path.join(out, 'index.html'), page)
  for (const file of Object.values(files)) {
    process.stdout.write(`${path.relative(process.cwd(), path.join(assets, file.name))}  ${file.content.length} bytes\n`)
  }
}

build().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`)
  process.exit(1)
})
