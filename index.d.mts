// Types of the ESM entry: the same declarations as the CommonJS entry's.
export * from './index.js'
