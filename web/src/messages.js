// The message area: what happened, in words, until the user dismisses it. Errors are
// announced at once (role=alert); other news politely.

const KEEP = 4 // older messages go when more arrive

export class Messages {
  constructor(list) {
    this.list = list
  }

  show(text, kind = 'info') {
    const item = document.createElement('li')
    item.className = `message message-${kind}`
    item.setAttribute('role', kind === 'error' ? 'alert' : 'status')
    const words = document.createElement('span')
    words.textContent = text
    const dismiss = document.createElement('button')
    dismiss.type = 'button'
    dismiss.className = 'message-dismiss'
    dismiss.textContent = '×'
    dismiss.setAttribute('aria-label', 'Dismiss message')
    dismiss.addEventListener('click', () => item.remove())
    item.append(words, dismiss)
    this.list.prepend(item)
    while (this.list.children.length > KEEP) this.list.lastElementChild.remove()
    return item
  }

  info(text) {
    return this.show(text, 'info')
  }

  error(text) {
    return this.show(text, 'error')
  }

  clear() {
    this.list.replaceChildren()
  }
}
