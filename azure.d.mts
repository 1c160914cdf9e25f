// Types of the ES module entry: the same declarations as the CommonJS entry's.
export * from './azure.js'
