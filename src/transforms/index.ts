export { valueAndGrad, valueAndGradWithAux, grad, nonFinitePaths, type WithAux } from './grad';
export {
  mse,
  softmaxCrossEntropy,
  gaussianNll,
  type Likelihood,
  type NoisyLikelihood,
  type GaussianNoiseParams,
} from './likelihoods';
export {
  vmapSamples,
  loopSamples,
  elbo,
  elboDetailed,
  klDivergence,
  predictive,
  DEFAULT_SAMPLES_PER_PASS,
  type SamplesCtx,
  type Samples,
  type ElboFn,
  type PredictiveOptions,
  type ElboOptions,
  type ElboParams,
  type ElboParts,
  type Predictive,
} from './elbo';
export { rmse, totalStd, gaussianPredictiveNll, coverage, type Coverage } from './metrics';
export {
  trainStep,
  fit,
  permutation,
  TrainingError,
  type TrainState,
  type BatchInfo,
  type EpochInfo,
  type FitOptions,
  type FitResult,
} from './train';
export {
  accuracy,
  categoricalNll,
  expectedCalibrationError,
  predictiveEntropy,
  predictiveProbs,
  type Labels,
  type CalibrationOptions,
  type PredictiveProbsOptions,
  type PredictiveProbs,
} from './classification';
export {
  initSharpening,
  sharpenedElbo,
  sharpenedElboDetailed,
  sharpen,
  type SharpeningParams,
  type SharpenedElboParams,
  type InitSharpeningOptions,
  type SharpenedElboOptions,
  type SharpenedElboParts,
  type SharpenedDraw,
} from './sharpening';
