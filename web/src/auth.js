// Credentials: none (single-user mode), the kbase_session cookie the browser already has,
// or a token typed into the sign-in form and kept in this tab's sessionStorage.

const TOKEN_KEY = 'tus-staging.token'
// The server also reads this cookie. The page sets it, scoped to the download route, so
// that a plain link downloads with the token (streamed to disk by the browser, whatever
// the file's size); every other request sends the token in a header.
const DOWNLOAD_COOKIE = 'kbase_session'
// RFC 6265 cookie-octets: a token with other characters cannot be a cookie value.
const COOKIE_SAFE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$/

function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY)
  } catch {
    return null // storage disabled: the token lives in memory only
  }
}

export class Credentials {
  constructor() {
    this.token = readToken()
  }

  /** Headers for a request: the token when there is one; else the cookie goes by itself. */
  headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {}
  }

  remember(token) {
    this.token = token
    try {
      sessionStorage.setItem(TOKEN_KEY, token)
    } catch {
      // storage disabled: signed in for this page view only
    }
  }

  /**
   * Make a plain download link carry the token: true when it will (or when no token is
   * needed), false when the token cannot be a cookie. Called on each download, so that
   * the tab that is signed in sets its own token even when another tab changed it.
   */
  armDownloadLink() {
    if (!this.token) return true
    if (!COOKIE_SAFE.test(this.token)) return false
    setDownloadCookie(this.token)
    return true
  }

  forget() {
    this.token = null
    try {
      sessionStorage.removeItem(TOKEN_KEY)
    } catch {
      // nothing was stored
    }
    setDownloadCookie(null)
  }
}

function downloadCookiePath() {
  return new URL('download/', document.baseURI).pathname
}

/** Set (or with null, remove) the token cookie for download links. */
function setDownloadCookie(token) {
  const attributes = [`Path=${downloadCookiePath()}`, 'SameSite=Strict']
  if (location.protocol === 'https:') attributes.push('Secure')
  if (token) {
    document.cookie = [`${DOWNLOAD_COOKIE}=${token}`, ...attributes].join('; ')
  } else {
    document.cookie = [`${DOWNLOAD_COOKIE}=`, 'Max-Age=0', ...attributes].join('; ')
  }
}
