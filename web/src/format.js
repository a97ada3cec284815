// How sizes and dates read on the page.

const UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function formatSize(bytes) {
  let value = Number(bytes)
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit += 1
  }
  if (unit === 0) return `${value} ${value === 1 ? 'byte' : 'bytes'}`
  return `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`
}

export function formatDate(milliseconds) {
  return new Date(milliseconds).toLocaleString(undefined, {
    dateStyle: 'medium',
    timeStyle: 'short',
  })
}
