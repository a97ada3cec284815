// Folder paths as the page handles them: relative to the user's home, "" for the home
// itself, components joined by "/", never a leading or trailing "/". No DOM here.

/** Components of a relative path, without empty and "." parts. */
export function components(path) {
  return String(path ?? '').split('/').filter((part) => part !== '' && part !== '.')
}

/** Join relative paths: join('a', 'b/c') === 'a/b/c'; join('', '') === ''. */
export function join(...paths) {
  return paths.flatMap(components).join('/')
}

/** The folder part: parent('a/b/c.txt') === 'a/b'; parent('c.txt') === ''. */
export function parent(path) {
  return components(path).slice(0, -1).join('/')
}

/** The last component: baseName('a/b/c.txt') === 'c.txt'. */
export function baseName(path) {
  const parts = components(path)
  return parts.length ? parts[parts.length - 1] : ''
}

/**
 * The destPath to send for a file added while `folder` is viewed.
 *
 * Uppy gives a file from a dropped or chosen folder a relativePath: "/top/sub/x.bin" from a
 * drop (the entry's full path), "top/sub/x.bin" from a folder input, null for a lone file.
 * The server takes destPath alone when it is present, so the page sends the whole folder:
 * the viewed folder, then the file's folders inside what was dropped. The home is "." (an
 * empty metadata value is refused by the server).
 */
export function destinationFolder(folder, relativePath) {
  return join(folder, relativePath ? parent(relativePath) : '') || '.'
}

/**
 * A listing entry's path relative to the home: entries name it "<user>/<relative>", the
 * first component being the home folder itself.
 */
export function entryRelativePath(entryPath) {
  return components(entryPath).slice(1).join('/')
}

/** Entries of `folder` itself out of a listing that may be recursive, folders first. */
export function directChildren(entries, folder) {
  const here = join(folder)
  const children = entries.filter((entry) => parent(entryRelativePath(entry.path)) === here)
  return children.sort(
    (a, b) => Number(b.isFolder) - Number(a.isFolder) || a.name.localeCompare(b.name),
  )
}

/**
 * A folder as the page's text names it: "your home folder" for the home; else its path,
 * with a leading "/" when `rooted` (a location on its own, not a path among others).
 */
export function folderLabel(folder, { rooted = false } = {}) {
  if (!folder) return 'your home folder'
  return rooted ? `/${folder}` : folder
}

/** A URL path for a relative path: each component percent-encoded, "/" kept. */
export function urlPath(path) {
  return components(path).map(encodeURIComponent).join('/')
}

/** The folder named by a location hash "#/a/b" ("" for none or "#/"). */
export function folderFromHash(hash) {
  const text = String(hash ?? '').replace(/^#\/?/, '')
  try {
    return components(text).map(decodeURIComponent).join('/')
  } catch {
    return '' // a malformed escape: show the home rather than fail
  }
}

/** The location hash for a folder. */
export function hashForFolder(folder) {
  return `#/${urlPath(folder)}`
}

/** Breadcrumbs of a folder: [{name, folder}], the home first. */
export function breadcrumbs(folder, homeName = 'Home') {
  const parts = components(folder)
  return [
    { name: homeName, folder: '' },
    ...parts.map((name, index) => ({ name, folder: parts.slice(0, index + 1).join('/') })),
  ]
}
