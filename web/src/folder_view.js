// The folder being viewed: breadcrumbs, its entries (folders first, size, date) and what
// can be done to each. Every server answer that is not a success becomes a message.

import { formatDate, formatSize } from './format.js'
import { baseName, breadcrumbs, directChildren, entryRelativePath, folderLabel, hashForFolder, join, parent } from './paths.js'

// Names the decompress action is offered for (the server decides what it can unpack).
const ARCHIVE = /\.(zip|tar|tgz|tar\.gz|tbz2?|tar\.bz2?|gz|bz2|bzip2)$/i

export class FolderView {
  constructor({ api, credentials, ask, details, messages, actions, elements }) {
    this.api = api
    this.credentials = credentials
    this.ask = ask
    this.details = details
    this.messages = messages
    this.actions = actions // optional routes the server has, e.g. {decompress: true}
    this.el = elements // {crumbs, table, body, empty, caption}
    this.folder = ''
    this.loading = null
  }

  /** Show `folder` (relative to the home); resolves once its entries are on screen. */
  async show(folder) {
    this.folder = join(folder)
    this.#renderCrumbs()
    await this.refresh()
  }

  async refresh() {
    const folder = this.folder
    const loading = this.api.list(folder)
    this.loading = loading
    this.el.table.setAttribute('aria-busy', 'true')
    try {
      const entries = await loading
      if (this.loading !== loading) return // a newer listing was asked for meanwhile
      this.#renderEntries(directChildren(entries, folder))
    } catch (error) {
      if (this.loading !== loading) return
      this.#renderEntries([])
      this.messages.error(`Could not list ${folderLabel(folder)}: ${error.message}`)
    } finally {
      if (this.loading === loading) this.el.table.removeAttribute('aria-busy')
    }
  }

  #renderCrumbs() {
    const items = breadcrumbs(this.folder).map((crumb, index, all) => {
      const item = document.createElement('li')
      const link = document.createElement('a')
      link.href = hashForFolder(crumb.folder)
      link.textContent = crumb.name
      if (index === all.length - 1) link.setAttribute('aria-current', 'page')
      item.append(link)
      return item
    })
    this.el.crumbs.replaceChildren(...items)
    this.el.caption.textContent = `Contents of ${folderLabel(this.folder, { rooted: true })}`
  }

  #renderEntries(entries) {
    this.el.body.replaceChildren(...entries.map((entry) => this.#row(entry)))
    this.el.empty.hidden = entries.length > 0
  }

  #row(entry) {
    const path = entryRelativePath(entry.path)
    const row = document.createElement('tr')
    row.dataset.path = path
    row.dataset.kind = entry.isFolder ? 'folder' : 'file'

    const name = document.createElement('th')
    name.scope = 'row'
    if (entry.isFolder) {
      const link = document.createElement('a')
      link.href = hashForFolder(path)
      link.className = 'entry-name folder'
      link.textContent = `${entry.name}/`
      name.append(link)
    } else {
      name.append(this.#button(entry.name, 'entry-name file link', () => this.openDetails(path), `Details of ${entry.name}`))
    }

    const size = document.createElement('td')
    size.className = 'size'
    size.textContent = entry.isFolder ? '—' : formatSize(entry.size)
    if (!entry.isFolder) size.title = `${entry.size} bytes`

    const modified = document.createElement('td')
    const time = document.createElement('time')
    time.dateTime = new Date(entry.mtime).toISOString()
    time.textContent = formatDate(entry.mtime)
    modified.append(time)

    const cell = document.createElement('td')
    const actions = document.createElement('div')
    actions.className = 'actions'
    cell.append(actions)
    if (!entry.isFolder) actions.append(this.#downloadLink(path, entry.name))
    actions.append(this.#button('Rename', 'rename', () => this.rename(path, entry.isFolder), `Rename or move ${entry.name}`))
    if (!entry.isFolder && this.actions.decompress && ARCHIVE.test(entry.name)) {
      actions.append(this.#button('Decompress', 'decompress', () => this.decompress(path), `Decompress ${entry.name}`))
    }
    actions.append(this.#button('Delete', 'delete danger', () => this.remove(path, entry.isFolder), `Delete ${entry.name}`))

    row.append(name, size, modified, cell)
    return row
  }

  #button(text, className, onClick, label) {
    const button = document.createElement('button')
    button.type = 'button'
    button.className = className
    button.textContent = text
    if (label) button.setAttribute('aria-label', label)
    button.addEventListener('click', onClick)
    return button
  }

  #downloadLink(path, name) {
    const link = document.createElement('a')
    link.href = this.api.downloadUrl(path)
    link.download = name
    link.className = 'button download'
    link.textContent = 'Download'
    link.setAttribute('aria-label', `Download ${name}`)
    link.addEventListener('click', (event) => {
      if (this.credentials.armDownloadLink()) return // the browser streams it to disk
      event.preventDefault()
      this.#downloadThroughMemory(path, name)
    })
    return link
  }

  // Only for a token that cannot travel as a cookie: the whole file passes through memory.
  async #downloadThroughMemory(path, name) {
    try {
      const response = await this.api.request('GET', 'download', path)
      const url = URL.createObjectURL(await response.blob())
      const link = document.createElement('a')
      link.href = url
      link.download = name
      link.click()
      setTimeout(() => URL.revokeObjectURL(url), 60_000)
    } catch (error) {
      this.messages.error(`Could not download ${path}: ${error.message}`)
    }
  }

  async openDetails(path) {
    this.details.showLoading(path)
    try {
      this.details.show(await this.api.metadata(path), this.#downloadLink(path, baseName(path)))
    } catch (error) {
      this.details.close()
      this.messages.error(`Could not read the details of ${path}: ${error.message}`)
    }
  }

  async makeFolder() {
    const name = await this.ask.prompt('New folder', 'Folder name', '', 'Create')
    if (name === null) return
    const path = join(this.folder, name)
    try {
      const created = await this.api.mkdir(path)
      this.messages.info(created ? `Created folder ${path}` : `Folder ${path} already exists`)
    } catch (error) {
      this.messages.error(`Could not create folder ${path}: ${error.message}`)
    }
    await this.refresh()
  }

  async rename(path, isFolder) {
    const kind = isFolder ? 'folder' : 'file'
    const newPath = await this.ask.prompt(`Rename or move ${kind}`, 'New path (from your home folder)', path, 'Rename')
    if (newPath === null || join(newPath) === path) return
    try {
      await this.api.move(path, join(newPath))
      this.messages.info(`Moved ${path} to ${join(newPath)}`)
    } catch (error) {
      this.messages.error(`Could not move ${path}: ${error.message}`)
    }
    await this.refresh()
  }

  async remove(path, isFolder) {
    const text = isFolder
      ? `The folder ${path} and everything in it will be deleted. This cannot be undone.`
      : `The file ${path} will be deleted. This cannot be undone.`
    if (!(await this.ask.confirmDanger(`Delete ${baseName(path)}?`, text, 'Delete'))) return
    try {
      await this.api.remove(path)
      this.messages.info(`Deleted ${path}`)
    } catch (error) {
      this.messages.error(`Could not delete ${path}: ${error.message}`)
    }
    await this.refresh()
  }

  async decompress(path) {
    this.messages.info(`Decompressing ${path}…`)
    try {
      await this.api.decompress(path)
      this.messages.info(`Decompressed ${path} into ${folderLabel(parent(path))}`)
    } catch (error) {
      this.messages.error(`Could not decompress ${path}: ${error.message}`)
    }
    await this.refresh()
  }
}
