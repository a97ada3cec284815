// The metadata record of one file (GET /metadata/{path}), in the <dialog id="details">.

import { formatDate, formatSize } from './format.js'
import { entryRelativePath } from './paths.js'

const NOT_TEXT = 'not text file' // what the record holds in head and tail for binary files

export class Details {
  constructor(dialog) {
    this.dialog = dialog
    this.title = dialog.querySelector('.details-title')
    this.fields = dialog.querySelector('.details-fields')
    this.excerpts = dialog.querySelector('.details-excerpts')
    this.head = dialog.querySelector('.details-head')
    this.tail = dialog.querySelector('.details-tail')
    this.download = dialog.querySelector('.details-download')
    dialog.querySelector('.details-close').addEventListener('click', () => this.close())
  }

  showLoading(path) {
    this.title.textContent = path
    this.fields.replaceChildren(this.#field('Status', 'Loading…'))
    this.excerpts.hidden = true
    this.download.replaceChildren()
    if (!this.dialog.open) this.dialog.showModal()
  }

  show(record, downloadLink) {
    this.title.textContent = entryRelativePath(record.path) || record.name
    const isText = record.isText ?? record.head !== NOT_TEXT
    const rows = [
      ['Size', `${formatSize(record.size)} (${record.size} bytes)`],
      ['Modified', formatDate(record.mtime)],
      ['MD5', record.md5],
      ['SHA-256', record.sha256],
      ['Lines', record.lineCount],
      ['Content', isText ? 'text' : 'binary'],
      ['Source', record.source],
      ['UPA', record.UPA],
    ]
    this.fields.replaceChildren(
      ...rows.filter(([, value]) => value !== undefined && value !== null).map(([name, value]) => this.#field(name, value)),
    )
    this.excerpts.hidden = !isText
    this.head.textContent = isText ? record.head : ''
    this.tail.textContent = isText ? record.tail : ''
    this.download.replaceChildren(downloadLink)
    if (!this.dialog.open) this.dialog.showModal()
  }

  close() {
    if (this.dialog.open) this.dialog.close()
  }

  #field(name, value) {
    const wrapper = document.createElement('div')
    const term = document.createElement('dt')
    term.textContent = name
    const definition = document.createElement('dd')
    definition.textContent = String(value)
    definition.dataset.field = name
    wrapper.append(term, definition)
    return wrapper
  }
}
