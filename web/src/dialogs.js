// Modal questions on the page's one <dialog id="ask">: a name to type, or a yes/no.
// A <dialog> opened with showModal() keeps the keyboard inside it and closes on Escape.

export class Ask {
  constructor(dialog) {
    this.dialog = dialog
    this.form = dialog.querySelector('form')
    this.title = dialog.querySelector('.ask-title')
    this.text = dialog.querySelector('.ask-text')
    this.label = dialog.querySelector('.ask-label')
    this.labelText = dialog.querySelector('.ask-label-text')
    this.input = dialog.querySelector('input')
    this.confirm = dialog.querySelector('.ask-confirm')
    this.cancel = dialog.querySelector('.ask-cancel')
    this.cancel.addEventListener('click', () => this.dialog.close('cancel'))
  }

  #open({ title, text, confirm, danger, input }) {
    this.title.textContent = title
    this.text.textContent = text ?? ''
    this.text.hidden = !text
    this.confirm.textContent = confirm
    this.confirm.classList.toggle('danger', Boolean(danger))
    this.label.hidden = !input
    this.input.required = Boolean(input)
    this.input.value = input?.value ?? ''
    if (input) this.labelText.textContent = input.label
    return new Promise((resolve) => {
      this.dialog.addEventListener(
        'close',
        () => resolve(this.dialog.returnValue === 'confirm' ? this.input.value : null),
        { once: true },
      )
      this.dialog.returnValue = ''
      this.dialog.showModal()
      if (input) {
        this.input.focus()
        this.input.select()
      } else {
        this.cancel.focus() // a destructive question starts on the safe answer
      }
    })
  }

  /** The text typed, or null when cancelled. */
  prompt(title, label, value = '', confirm = 'OK') {
    return this.#open({ title, confirm, input: { label, value } })
  }

  /** True when confirmed. */
  async confirmDanger(title, text, confirm) {
    return (await this.#open({ title, text, confirm, danger: true })) !== null
  }
}
