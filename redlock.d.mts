// Types of the ES module entry: the CommonJS entry's declarations, with
// redlock's default and named exports.
import Redlock from './redlock.js'

export default Redlock
export import RedisClient = Redlock.RedisClient
export import RedisClientOptions = Redlock.RedisClientOptions
export import ClientExecutionResult = Redlock.ClientExecutionResult
export import ExecutionStats = Redlock.ExecutionStats
export import ExecutionResult = Redlock.ExecutionResult
export import Settings = Redlock.Settings
export import LockSettings = Redlock.LockSettings
export import ResourceLockedError = Redlock.ResourceLockedError
export import ExecutionError = Redlock.ExecutionError
export import Lock = Redlock.Lock
export import RedlockAbortSignal = Redlock.RedlockAbortSignal
