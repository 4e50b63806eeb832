// ESM entry point of llmpool: the same module as require('llmpool').
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const llmpool = require('./llmpool.js');

export const { Client, Response, DeltaStream, LLMPoolError, Code, LogLevel, Api, DeltaKind, codeName, version, LIB_PATH } =
  llmpool;
export default llmpool;
