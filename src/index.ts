/**
 * blitz-ts: Bayesian neural network layers (Bayes by Backprop) for TypeScript on TensorFlow.js,
 * as pure functions over explicit parameter trees and PRNG keys.
 *
 * Importing this module registers tfjs-core's gradients and chained ops, the cpu backend, and the
 * kernels the wasm backend lacks (see `setup.ts`).
 */
import './setup';

export {
  tree,
  random,
  distributions,
  TreeError,
  KeyError,
  normalPrior,
  laplacePrior,
  scaleMixturePrior,
} from './params';
export type { Tree, ParamTree, TreeDef, Key, Prior, CustomPrior, GaussianParams } from './params';
export {
  ConfigError,
  OptimConfigError,
  ShapeError,
  MissingKeyError,
  ParamError,
  IndexError,
} from './errors';
export type { IndexErrorContext } from './errors';
export * as layers from './layers';
export * as transforms from './transforms';
export * as optim from './optim';
export {
  useBackend,
  backendReport,
  classifyLoadError,
  BackendError,
  BACKEND_NAMES,
} from './backend';
export type { BackendName, BackendErrorCode, BackendStatus, UseBackendOptions } from './backend';
export {
  WASM_SUPPLIED_KERNELS,
  WASM_REPLACED_KERNELS,
  CONV_GRADIENT_KERNELS,
  registerConvGradients,
  unregisterConvGradients,
} from './kernels';
