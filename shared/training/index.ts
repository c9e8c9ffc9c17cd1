/** Local training for federated rounds, and the data splits used to simulate clients. */
export { trainLocal, type TrainLocalOptions, type TrainLocalResult, type TrainProgress, type OptimizerName, type LossName } from './local-train.ts'
export { readWeights, setTrainableWeights, weightNames, weightSize } from './weights.ts'
export { evaluateAccuracy } from './evaluate.ts'
export { classCounts, fedRsScale, fedLcOffsets, type LabelSkew } from './label-skew.ts'
export { classStats, classStatsLength, classMeansFromStats, naiveMixBatch, type ClassMeans } from './mean-mix.ts'
export { takeRows, type TrainingData } from './data.ts'
export { parsePartition, partitionIndices, iidPartition, classesPartition, dirichletPartition, type PartitionSpec } from './partition.ts'
