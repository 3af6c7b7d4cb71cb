// Runs one state machine execution in aws-local-stepfunctions for the Go
// harness (internal/sfntest). Usage: node runner.mjs SPEC.json
//
// SPEC.json: {
//   "definition": {...},        the rendered ASL
//   "input": {...},             the execution input
//   "context": {...},           the context object's Execution and StateMachine
//   "region": "us-east-1",
//   "taskURL": "http://...",    where Task states that are not Lambda calls go
//   "retryIntervalMs": 10       retry waits (omit or null: the ASL's own)
// }
//
// Lambda tasks (Resource arn:aws:lambda:... or arn:aws:states:::lambda:invoke)
// are called by the library itself through the AWS SDK, which the Go harness
// points at its Lambda Invoke API (AWS_ENDPOINT_URL_LAMBDA, dummy keys).
// Every other Task state (dynamodb:*, events:putEvents, ecs:runTask...) gets a
// local handler (the library's overrides.taskResourceLocalHandlers) that POSTs
// {state, resource, input, taskTokens, heartbeatSeconds} to taskURL; the
// answer is {output} or {error, cause}. taskTokens are the emulated
// $$.Task.Token values found in the input (see issuedTokens).
//
// stdout: one JSON object per line, {"event": ...} for each of the library's
// events, then {"result": {status, output | error, cause}} with status
// SUCCEEDED, FAILED, ABORTED or TIMED_OUT. stdin: lines {"cmd": "abort"}
// abort the execution (StopExecution); stdin closing aborts it too.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import {
  StateMachine,
  ExecutionError,
  ExecutionAbortedError,
  ExecutionTimeoutError,
} from 'aws-local-stepfunctions';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function isLambda(resource) {
  return resource.startsWith('arn:aws:lambda:') || resource.startsWith('arn:aws:states:::lambda:invoke');
}

// Task states by name, nested ones (Map, Parallel) included. The library keys
// overrides by state name, so a name must not stand for two resources.
function taskStates(states, out = new Map()) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task') {
      if (out.has(name) && out.get(name).Resource !== state.Resource) {
        throw new Error(`two Task states named ${name} call different resources`);
      }
      out.set(name, state);
    }
    for (const sub of [state.ItemProcessor, state.Iterator, ...(state.Branches ?? [])]) {
      if (sub) taskStates(sub.States, out);
    }
  }
  return out;
}

class TaskError extends Error {
  constructor(name, cause) {
    super(cause);
    this.name = name;
  }
}

// aws-local-stepfunctions 3.0.0 has no task tokens (no $$.Task.Token, no
// .waitForTaskToken). Emulation: $$.Task.Token below hands out a fresh
// random token each time a state's Parameters read it; the local handler
// finds the tokens it was issued in its input and sends them along, and
// the Go harness holds the state until SendTaskSuccess / SendTaskFailure
// for that token (see ecs.go). One token per read, not per state entry:
// the definition reads it once per Task state.
const issuedTokens = new Set();

function tokensIn(value, found = []) {
  if (typeof value === 'string') {
    if (issuedTokens.has(value)) {
      issuedTokens.delete(value);
      found.push(value);
    }
  } else if (value && typeof value === 'object') {
    for (const v of Object.values(value)) tokensIn(v, found);
  }
  return found;
}

function localHandler(state, resource, heartbeatSeconds) {
  return async (input) => {
    let res;
    try {
      const taskTokens = tokensIn(input);
      res = await fetch(spec.taskURL, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ state, resource, input, taskTokens, heartbeatSeconds }),
      });
    } catch (err) {
      throw new TaskError('States.TaskFailed', `local handler for ${resource}: ${err.message}`);
    }
    const body = await res.json();
    if (body.error) throw new TaskError(body.error, body.cause ?? '');
    return body.output ?? null;
  };
}

// aws-local-stepfunctions 3.0.0 treats "ResultPath": "$" as a field named
// "$" (processResultPath strips "$." only) where the ASL specification, and
// Step Functions, replace the whole input with the result: the default
// ResultPath. Dropping the field gives the specified behaviour.
function normalize(states) {
  for (const state of Object.values(states)) {
    if (state.ResultPath === '$') delete state.ResultPath;
    for (const sub of [state.ItemProcessor, state.Iterator, ...(state.Branches ?? [])]) {
      if (sub) normalize(sub.States);
    }
  }
}
normalize(spec.definition.States);

const taskResourceLocalHandlers = {};
const retryIntervalOverrides = {};
for (const [name, state] of taskStates(spec.definition.States)) {
  if (!isLambda(state.Resource)) {
    taskResourceLocalHandlers[name] = localHandler(name, state.Resource, state.HeartbeatSeconds ?? null);
  }
}
if (spec.retryIntervalMs != null) {
  const retrying = (states) => {
    for (const [name, state] of Object.entries(states)) {
      if (state.Retry) retryIntervalOverrides[name] = spec.retryIntervalMs;
      for (const sub of [state.ItemProcessor, state.Iterator, ...(state.Branches ?? [])]) {
        if (sub) retrying(sub.States);
      }
    }
  };
  retrying(spec.definition.States);
}

// The library's context object has no State: $$.State.EnteredTime reads the
// time at which the state evaluates its Parameters (a getter, so it moves).
// $$.Task.Token: see issuedTokens above (emulated; the library has no Task
// in its context object either).
const context = {
  ...spec.context,
  State: {
    get EnteredTime() {
      return new Date().toISOString();
    },
  },
  Task: {
    get Token() {
      const token = 'sfntest-token-' + randomBytes(24).toString('base64url');
      issuedTokens.add(token);
      return token;
    },
  },
};

const machine = new StateMachine(spec.definition, {
  awsConfig: {
    region: spec.region,
    credentials: {
      accessKeys: {
        accessKeyId: process.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
      },
    },
  },
});

const execution = machine.run(spec.input, {
  overrides: { taskResourceLocalHandlers, retryIntervalOverrides },
  context,
});

let aborted = false;
function abort() {
  if (!aborted) {
    aborted = true;
    execution.abort();
  }
}
const commands = createInterface({ input: process.stdin });
commands.on('line', (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  if (cmd.cmd === 'abort') abort();
});
commands.on('close', abort);

const events = (async () => {
  for await (const event of execution.eventLogs) emit({ event });
})();

let result;
try {
  const output = await execution.result;
  result = { status: 'SUCCEEDED', output };
} catch (err) {
  if (err instanceof ExecutionAbortedError) {
    result = { status: 'ABORTED' };
  } else if (err instanceof ExecutionTimeoutError) {
    result = { status: 'TIMED_OUT', error: 'States.Timeout' };
  } else if (err instanceof ExecutionError) {
    result = { status: 'FAILED', error: err.cause?.name ?? 'States.Runtime', cause: err.cause?.message ?? err.message };
  } else {
    result = { status: 'FAILED', error: 'States.Runtime', cause: String(err?.stack ?? err) };
  }
}
// The event log ends with the execution's last event; give it a moment to drain.
await Promise.race([events, new Promise((r) => setTimeout(r, 200))]);
emit({ result });
process.exit(0);
