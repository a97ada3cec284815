// Requests to the staging API, relative to the page (so the page also works behind a
// proxy that serves the whole service under a path prefix).

import { urlPath } from './paths.js'

/** An answer that was not 2xx, with the server's reason as its message. */
export class ApiError extends Error {
  constructor(status, reason) {
    super(reason)
    this.status = status
  }
}

/** The first line of `text`, without the blanks around it. */
export function firstLine(text) {
  return text.trim().split('\n', 1)[0].trim()
}

/** The server's one-line reason from an error answer (text/plain or JSON). */
export async function reasonOf(response) {
  let text = ''
  try {
    text = (await response.text()).trim()
  } catch {
    // the body could not be read: the status line below still says something
  }
  if (text && (response.headers.get('Content-Type') ?? '').includes('json')) {
    try {
      const body = JSON.parse(text)
      text = body.error ?? body.message ?? body.reason ?? text
      if (typeof text !== 'string') text = JSON.stringify(text)
    } catch {
      // not JSON after all: keep the text
    }
  }
  return firstLine(text) || `${response.status} ${response.statusText}`.trim()
}

export class Api {
  /**
   * `headers()` gives the credentials to send with each request (maybe none);
   * `onUnauthorized(reason)` hears of every 401 (credentials refused or expired).
   */
  constructor(headers, onUnauthorized = () => {}) {
    this.headers = headers
    this.onUnauthorized = onUnauthorized
  }

  url(route, path = '', query = undefined) {
    const relative = urlPath(path)
    const url = new URL(relative ? `${route}/${relative}` : route, document.baseURI)
    for (const [key, value] of Object.entries(query ?? {})) url.searchParams.set(key, value)
    return url
  }

  async request(method, route, path = '', { json, query } = {}) {
    const headers = { ...this.headers() }
    let body
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json'
      body = JSON.stringify(json)
    }
    let response
    try {
      response = await fetch(this.url(route, path, query), {
        method, headers, body, credentials: 'same-origin', cache: 'no-store',
      })
    } catch (error) {
      throw new ApiError(0, `the server could not be reached (${error.message})`)
    }
    if (!response.ok) {
      const error = new ApiError(response.status, await reasonOf(response))
      if (response.status === 401) this.onUnauthorized(error.message)
      throw error
    }
    return response
  }

  /** The user name the server knows these credentials by. */
  async whoAmI() {
    const text = await (await this.request('GET', 'test-auth')).text()
    return text.replace(/^I'm authenticated as /, '').trim()
  }

  /**
   * Entries of one folder: asks for one level. A server may answer with more; the view
   * keeps the folder's own children (directChildren in paths.js).
   */
  async list(folder) {
    const response = await this.request('GET', 'list', folder, { query: { depth: '1' } })
    return response.json()
  }

  async metadata(path) {
    return (await this.request('GET', 'metadata', path)).json()
  }

  async mkdir(path) {
    const response = await this.request('POST', 'mkdir', path)
    return response.status === 201
  }

  async move(path, newPath) {
    return (await this.request('PATCH', 'mv', path, { json: { newPath } })).text()
  }

  async remove(path) {
    return (await this.request('DELETE', 'delete', path)).text()
  }

  async decompress(path) {
    return (await this.request('PATCH', 'decompress', path)).text()
  }

  downloadUrl(path) {
    return this.url('download', path).href
  }
}
