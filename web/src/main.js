// The staging area's page: sign in, browse the folder being viewed, upload into it.
// Everything the page needs to know about the server comes in the config block the
// server writes into the HTML (see tus_staging/web_page.py).

import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'
import './style.css'

import { Api, ApiError } from './api.js'
import { Credentials } from './auth.js'
import { Details } from './details.js'
import { Ask } from './dialogs.js'
import { FolderView } from './folder_view.js'
import { Messages } from './messages.js'
import { folderFromHash } from './paths.js'
import { createUploader } from './uploader.js'

const $ = (selector) => document.querySelector(selector)

function readConfig() {
  const defaults = { tusEndpoint: '/files/', signIn: 'token', maxSize: null, actions: {} }
  try {
    return { ...defaults, ...JSON.parse($('#tus-staging-config').textContent) }
  } catch {
    return defaults
  }
}

const config = readConfig()
const credentials = new Credentials()
const api = new Api(() => credentials.headers(), sessionEnded)
const messages = new Messages($('#messages'))
const ask = new Ask($('#ask'))
// Relative to the page, like every other request: right behind a path-prefix proxy too.
const endpoint = new URL(config.tusEndpoint.replace(/^\/+/, ''), document.baseURI).href

let workspace = null

/** A 401 while working: the token expired or was revoked. Ask for one again. */
function sessionEnded(reason) {
  if ($('#workspace').hidden) return // signing in: the form shows its own error
  askToSignIn(reason)
}

/** The sign-in form; with a `reason`, the server refused the token: forget it, say why. */
function askToSignIn(reason = null) {
  if (reason !== null) {
    credentials.forget()
    $('#account').hidden = true
    $('#sign-in-error').textContent = `Please sign in again: ${reason}`
  }
  show('sign-in')
  $('#token').focus()
}

function show(section) {
  $('#sign-in').hidden = section !== 'sign-in'
  $('#workspace').hidden = section !== 'workspace'
  $('#loading').hidden = section !== 'loading'
}

function showAccount(user, how) {
  $('#account-user').textContent = user
  $('#account-how').textContent = {
    none: ' (single-user mode)',
    cookie: ' (KBase session)',
    token: '',
  }[how]
  $('#account').hidden = false
  $('#sign-out').hidden = how !== 'token'
}

function enterWorkspace(user, how) {
  showAccount(user, how)
  show('workspace')
  if (workspace !== null) return
  const view = new FolderView({
    api,
    credentials,
    ask,
    details: new Details($('#details')),
    messages,
    actions: config.actions ?? {},
    elements: {
      crumbs: $('#breadcrumbs ol'),
      table: $('#listing'),
      body: $('#listing tbody'),
      caption: $('#listing caption'),
      empty: $('#empty'),
    },
  })
  let refreshTimer = null
  const uploader = createUploader({
    target: $('#uploader'),
    endpoint,
    headers: () => credentials.headers(),
    user,
    maxSize: config.maxSize,
    folder: () => view.folder,
    onUploaded: () => {
      // Many files finish together: one listing for the lot.
      clearTimeout(refreshTimer)
      refreshTimer = setTimeout(() => view.refresh(), 250)
    },
    messages,
  })
  const follow = () => {
    const folder = folderFromHash(location.hash)
    uploader.showFolder(folder)
    view.show(folder)
  }
  window.addEventListener('hashchange', follow)
  $('#new-folder').addEventListener('click', () => view.makeFolder())
  $('#refresh').addEventListener('click', () => view.refresh())
  workspace = { view, uploader }
  follow()
}

async function signOut() {
  const uploading = Object.keys(workspace?.uploader.uppy.getState().currentUploads ?? {}).length
  if (
    uploading &&
    !(await ask.confirmDanger(
      'Sign out?',
      'Uploads in progress stop. Add the same files again in the same folder to resume them.',
      'Sign out',
    ))
  ) {
    return
  }
  credentials.forget()
  location.reload() // drops the uploader and everything the page knew of this user
}

async function signInWithToken(event) {
  event.preventDefault()
  const input = $('#token')
  const error = $('#sign-in-error')
  const token = input.value.trim()
  error.textContent = ''
  credentials.token = token
  try {
    const user = await api.whoAmI()
    credentials.remember(token)
    input.value = ''
    // After a session ended mid-work, start afresh: the page may hold another user's state.
    if (workspace !== null) location.reload()
    else enterWorkspace(user, 'token')
  } catch (failure) {
    credentials.forget()
    error.textContent = `Sign-in failed: ${failure.message}`
    input.focus()
  }
}

async function start() {
  $('#sign-in form').addEventListener('submit', signInWithToken)
  $('#sign-out').addEventListener('click', signOut)
  try {
    const user = await api.whoAmI()
    const how = config.signIn === 'none' ? 'none' : credentials.token ? 'token' : 'cookie'
    enterWorkspace(user, how)
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      askToSignIn(credentials.token ? error.message : null)
    } else {
      messages.error(`The server did not answer as expected: ${error.message}`)
      askToSignIn()
    }
  }
}

start()
