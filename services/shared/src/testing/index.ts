/**
 * The test kit: start a service in-process or as a process, wait until
 * something holds, read a metric, expect a status code, build an activity,
 * read and audit the data plane's Redis state.
 */
export { type CodeExpectation, codeIs, expectCode } from "./codes.ts";
export { type ActivityOverrides, activityFixture } from "./fixtures.ts";
export {
  type MetricSample,
  type MetricSource,
  type MetricValueOptions,
  metricSamples,
  metricValue,
  parseMetrics,
} from "./metrics.ts";
export { type PollOptions, pollUntil } from "./poll.ts";
export { type ActivityAudit, auditActivity, scanAll, snapshotRedis } from "./redis-state.ts";
export {
  type LogLine,
  type ServiceProcess,
  type StartServiceProcessOptions,
  startServiceProcess,
} from "./service-process.ts";
export {
  type AsProcessOptions,
  type FrontOptions,
  type InProcessService,
  type ProcessService,
  type ServiceUnderTest,
  serviceEnv,
  startAsProcess,
  startFront,
  startInProcess,
  type TestStores,
} from "./services.ts";
