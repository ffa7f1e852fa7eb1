// An in-memory worker for the solver's own tests: results are maps of file contents, ops are a
// tiny language, and every call is observable. It lets the solver's scheduling, sharing and
// cancellation be tested deterministically; the real worker has its own tests with runc.
import { type Digest, digestOf } from "../util/digest.ts";
import type {
  CacheMap,
  ContentSelector,
  OpContext,
  OpSolver,
  VertexOp,
  Worker,
  WorkerRef,
} from "../worker/types.ts";

export type Files = Map<string, string>;

interface Stored {
  files: Files;
  handles: number;
}

export class MemWorker implements Worker {
  readonly id = "mem";
  readonly labels = {};
  readonly platforms = [{ os: "linux", architecture: "amd64" }];
  /** Contents of `local://NAME` sources; tests change them between builds. */
  readonly locals = new Map<string, Record<string, string>>();
  readonly store = new Map<string, Stored>();
  /** How many times each op digest executed. */
  readonly execCount = new Map<string, number>();
  /** Start and end times of every exec, for overlap checks. */
  readonly spans: { name: string; start: number; end: number }[] = [];
  /** Exec hook: tests can block an op until they release it. */
  gate?: (args: string[], signal: AbortSignal) => Promise<void>;
  checksumCalls = 0;
  private seq = 0;

  resolveOp(v: VertexOp): OpSolver {
    const op = v.op.op;
    if (op.case === "source") {
      const name = op.value.identifier.replace(/^local:\/\//, "");
      return {
        cacheMap: async () => {
          const files = this.locals.get(name);
          if (!files) throw new Error(`no local source ${name}`);
          return { digest: digestOf(JSON.stringify(["local", Object.entries(files).sort()])), deps: [] };
        },
        exec: async () => [this.newRef(new Map(Object.entries(this.locals.get(name) ?? {})))],
      };
    }
    if (op.case === "exec") {
      const args = op.value.meta?.args ?? [];
      return {
        cacheMap: async (): Promise<CacheMap> => ({
          digest: v.digest,
          deps: v.op.inputs.map(() => ({ kind: "definition" })),
        }),
        exec: async (ctx: OpContext, inputs: WorkerRef[]) => {
          const start = Date.now();
          this.execCount.set(v.digest, (this.execCount.get(v.digest) ?? 0) + 1);
          await this.gate?.(args, ctx.signal);
          ctx.signal.throwIfAborted();
          const files: Files = new Map(inputs[0] ? this.files(inputs[0]) : []);
          const [cmd, ...rest] = args;
          if (cmd === "fail") {
            ctx.log.write(2, new TextEncoder().encode(`about to fail\n${rest.join(" ")}\n`));
            throw new Error(`process "${args.join(" ")}" did not complete successfully: exit code: 1`);
          }
          if (cmd === "write") files.set(rest[0]!, rest[1]!);
          if (cmd === "sleep") await new Promise((r) => setTimeout(r, Number(rest[0])));
          ctx.log.write(1, new TextEncoder().encode(`ran ${args.join(" ")}\n`));
          this.spans.push({ name: args.join(" "), start, end: Date.now() });
          return [this.newRef(files)];
        },
      };
    }
    if (op.case === "file") {
      const actions = op.value.actions;
      return {
        cacheMap: async () => ({
          digest: v.digest,
          deps: v.op.inputs.map((_, i): CacheMap["deps"][number] => {
            const copies = actions.filter((a) => a.action.case === "copy" && Number(a.secondaryInput) === i);
            const asBase = actions.some((a) => Number(a.input) === i);
            if (copies.length > 0 && !asBase) {
              return {
                kind: "content",
                selectors: copies.map((a) => ({ path: (a.action.value as { src: string }).src })),
              };
            }
            return { kind: "definition" };
          }),
        }),
        exec: async (_ctx, inputs) => {
          let files: Files = new Map();
          for (const a of actions) {
            const base = Number(a.input);
            files = base >= 0 && base < inputs.length ? new Map(this.files(inputs[base]!)) : files;
            if (a.action.case === "copy") {
              const src = this.files(inputs[Number(a.secondaryInput)]!);
              for (const [p, c] of src)
                if (p.startsWith(a.action.value.src)) files.set(a.action.value.dest + p, c);
            } else if (a.action.case === "mkfile") {
              files.set(a.action.value.path, new TextDecoder().decode(a.action.value.data));
            }
          }
          return [this.newRef(files)];
        },
      };
    }
    throw new Error(`mem worker cannot run ${op.case} ops`);
  }

  async loadRef(id: string): Promise<WorkerRef | undefined> {
    return this.store.has(id) ? this.handle(id) : undefined;
  }

  async contentChecksum(ref: WorkerRef, selector: ContentSelector): Promise<Digest> {
    this.checksumCalls++;
    const entries = [...this.files(ref)].filter(([p]) => p.startsWith(selector.path)).sort();
    return digestOf(JSON.stringify(entries));
  }

  files(ref: WorkerRef): Files {
    const s = this.store.get(ref.id);
    if (!s) throw new Error(`ref ${ref.id} is gone`);
    return s.files;
  }

  /** Handles not yet released, over all refs: 0 when nothing leaks. */
  openHandles(): number {
    let n = 0;
    for (const s of this.store.values()) n += s.handles;
    return n;
  }

  private newRef(files: Files): WorkerRef {
    const id = `ref${++this.seq}`;
    this.store.set(id, { files, handles: 0 });
    return this.handle(id);
  }

  private handle(id: string): WorkerRef {
    const s = this.store.get(id)!;
    s.handles++;
    let released = false;
    const ref: WorkerRef = {
      id,
      clone: () => this.handle(id),
      release: async () => {
        if (released) throw new Error(`ref ${id} released twice`);
        released = true;
        s.handles--;
      },
    };
    return ref;
  }
}
