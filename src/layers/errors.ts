/**
 * @deprecated Re-exports of `src/errors.ts`, the one error module (kept while the layer files
 * still import from here; import from `../errors` instead).
 */
export {
  ConfigError,
  IndexError,
  MissingKeyError,
  ParamError,
  ShapeError,
  fmtShape,
  show,
} from '../errors';
export type { IndexErrorContext } from '../errors';
