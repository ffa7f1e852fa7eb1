// ExecOp: run a process with runc on the root filesystem and every LLB mount, and commit the
// writable mounts as the op's outputs.
import { mkdtemp, rmdir } from "node:fs/promises";
import { join } from "node:path";
import {
  type ExecOp as PbExecOp,
  type Mount as PbMount,
  MountType,
  NetMode,
  SecurityMode,
} from "../../proto/gen/pb/ops_pb.ts";
import type { ImmutableRef, MutableRef } from "../../cache/types.ts";
import type { ExecMount, ProcessSpec } from "../../executor/types.ts";
import { DEFAULT_SSH_ID, hasAgent, listenForAgent } from "../../session/sshforward/forward.ts";
import type { Mount } from "../../snapshot/types.ts";
import type { Digest } from "../../util/digest.ts";
import type { CacheMountLease, Sharing } from "../cachemounts.ts";
import type { CacheMap, InputDependency, OpContext, OpSolver, VertexOp, WorkerRef } from "../types.ts";
import type { OCIWorker } from "../worker.ts";
import { opCacheDigest } from "./identity.ts";

export class ExecOp implements OpSolver {
  private readonly w: OCIWorker;
  private readonly v: VertexOp;
  private readonly e: PbExecOp;

  constructor(w: OCIWorker, v: VertexOp, e: PbExecOp) {
    this.w = w;
    this.v = v;
    this.e = e;
    if (!e.meta || e.meta.args.length === 0) throw new Error(`${v.name}: exec op has no command`);
    if (!e.mounts.some((m) => m.dest === "/")) throw new Error(`${v.name}: exec op has no root mount`);
  }

  async cacheMap(): Promise<CacheMap> {
    return { digest: this.identity(), deps: this.v.op.inputs.map((_, i) => this.dependency(i)) };
  }

  /** The op's identity without the proxy settings, which BuildKit also keeps out of cache keys. */
  private identity(): Digest {
    return opCacheDigest(this.v.op, (clone) => {
      if (clone.op.case === "exec" && clone.op.value.meta) clone.op.value.meta.proxyEnv = undefined;
    });
  }

  /**
   * An input only mounted read-only (not as the root) takes part in the key through the content
   * of what is mounted, so a change elsewhere in it does not re-run the step.
   */
  private dependency(i: number): InputDependency {
    const uses = this.e.mounts.filter((m) => Number(m.input) === i);
    const readonlyOnly =
      uses.length > 0 &&
      uses.every((m) => m.mountType === MountType.BIND && m.readonly && m.dest !== "/" && m.output < 0n);
    if (!readonlyOnly) return { kind: "definition" };
    return { kind: "content", selectors: uses.map((m) => ({ path: m.selector || "/", followLinks: true })) };
  }

  async exec(ctx: OpContext, inputs: WorkerRef[]): Promise<WorkerRef[]> {
    const refs = inputs as ImmutableRef[];
    const outputs = new Map<number, MutableRef>();
    const cleanups: (() => Promise<unknown>)[] = [];
    let root: Mount[] = [];
    const mounts: ExecMount[] = [];
    try {
      for (const m of this.e.mounts) {
        const input = Number(m.input) >= 0 ? refs[Number(m.input)] : undefined;
        if (Number(m.input) >= refs.length)
          throw new Error(`${this.v.name}: mount ${m.dest} names input ${m.input}, which does not exist`);
        switch (m.mountType) {
          case MountType.BIND: {
            const ms = await this.bindMount(m, input, outputs, cleanups);
            if (m.dest === "/") root = ms;
            else
              mounts.push({
                type: "bind",
                dest: m.dest,
                mounts: ms,
                selector: m.selector || undefined,
                readonly: m.readonly,
              });
            break;
          }
          case MountType.CACHE: {
            const lease = await this.cacheMount(m, input, ctx);
            cleanups.push(() => lease.release());
            mounts.push({ type: "bind", dest: m.dest, mounts: lease.mounts, readonly: m.readonly });
            break;
          }
          case MountType.TMPFS:
            mounts.push({ type: "tmpfs", dest: m.dest, size: Number(m.TmpfsOpt?.size ?? 0n) || undefined });
            break;
          case MountType.SECRET: {
            const opt = m.secretOpt;
            if (!opt) throw new Error(`${this.v.name}: secret mount ${m.dest} has no secret options`);
            const data = await this.secret(opt.ID, opt.optional, ctx);
            if (data)
              mounts.push({
                type: "secret",
                dest: m.dest,
                data,
                uid: opt.uid,
                gid: opt.gid,
                mode: opt.mode || 0o400,
              });
            break;
          }
          case MountType.SSH: {
            const opt = m.SSHOpt;
            const id = opt?.ID || DEFAULT_SSH_ID;
            const caller = ctx.session?.caller;
            if (!caller || !(await hasAgent(caller, id, ctx.signal))) {
              if (opt?.optional) break;
              throw new Error(
                `${this.v.name}: no ssh agent ${JSON.stringify(id)} in the client's session: pass --ssh ${id} to buildctl`,
              );
            }
            const agent = await listenForAgent(
              caller,
              id,
              join(this.w.mountRoot, `ssh-${Math.random().toString(36).slice(2, 12)}.sock`),
            );
            cleanups.push(() => agent.close());
            mounts.push({
              type: "ssh",
              dest: m.dest,
              socketPath: agent.path,
              uid: opt?.uid ?? 0,
              gid: opt?.gid ?? 0,
              mode: opt?.mode || 0o600,
            });
            break;
          }
          default:
            throw new Error(`${this.v.name}: unknown mount type ${m.mountType} at ${m.dest}`);
        }
      }

      const proc = await this.process(ctx);
      await this.w.executor.run(
        `${this.v.digest.slice(7, 19)}${Math.random().toString(36).slice(2, 8)}`,
        root,
        mounts,
        proc,
        { stdout: (c) => ctx.log.write(1, c), stderr: (c) => ctx.log.write(2, c) },
        ctx.signal,
      );
      // Commit the outputs in output order; each mutable handle is used up by its commit.
      const results: ImmutableRef[] = [];
      const order = [...outputs.keys()].sort((a, b) => a - b);
      try {
        for (const idx of order) {
          const mref = outputs.get(idx)!;
          outputs.delete(idx);
          results.push(await mref.commit());
        }
      } catch (e) {
        for (const r of results) await r.release();
        throw e;
      }
      return results;
    } finally {
      for (const m of outputs.values()) await m.release().catch(() => {});
      for (const c of cleanups.reverse()) await c().catch(() => {});
    }
  }

  private async bindMount(
    m: PbMount,
    input: ImmutableRef | undefined,
    outputs: Map<number, MutableRef>,
    cleanups: (() => Promise<unknown>)[],
  ): Promise<Mount[]> {
    if (m.output >= 0n) {
      const mref = await this.w.cache.newMutable(input, { description: `${this.v.name} ${m.dest}` });
      outputs.set(Number(m.output), mref);
      return mref.mount();
    }
    if (!m.readonly) {
      // Writable but not an output (RUN --mount=type=bind,rw): changes are thrown away.
      const scratchRef = await this.w.cache.newMutable(input, {
        description: `${this.v.name} ${m.dest} (discarded)`,
      });
      cleanups.push(() => scratchRef.release());
      return scratchRef.mount();
    }
    if (input) return input.mount({ readonly: true });
    // A read-only mount of nothing: an empty directory.
    const dir = await mkdtemp(join(this.w.mountRoot, "empty-"));
    cleanups.push(() => rmdir(dir));
    return [{ type: "bind", source: dir, options: ["rbind", "ro"] }];
  }

  private cacheMount(m: PbMount, base: ImmutableRef | undefined, ctx: OpContext): Promise<CacheMountLease> {
    const id = m.cacheOpt?.ID || m.dest;
    const sharing: Sharing = (["shared", "private", "locked"] as const)[m.cacheOpt?.sharing ?? 0] ?? "shared";
    return this.w.cacheMounts.acquire(id, sharing, base, ctx.signal);
  }

  private async secret(id: string, optional: boolean, ctx: OpContext): Promise<Uint8Array | undefined> {
    const data = ctx.session ? await ctx.session.getSecret(id, ctx.signal) : undefined;
    if (data === undefined && !optional) {
      throw new Error(
        `${this.v.name}: secret ${JSON.stringify(id)} not found${ctx.session ? " in the client's session" : " (no client session)"}`,
      );
    }
    return data;
  }

  private async process(ctx: OpContext): Promise<ProcessSpec> {
    const meta = this.e.meta!;
    let network: "host" | "none" = this.w.defaultNetwork;
    if (this.e.network === NetMode.NONE) network = "none";
    if (this.e.network === NetMode.HOST) {
      if (!this.w.allowHostNetwork)
        throw new Error(
          `${this.v.name}: network=host is not allowed by this daemon (entitlement network.host)`,
        );
      network = "host";
    }
    let security: "sandbox" | "insecure" = "sandbox";
    if (this.e.security === SecurityMode.INSECURE) {
      if (!this.w.allowInsecure) {
        throw new Error(
          `${this.v.name}: security=insecure is not allowed by this daemon: start it with --allow-insecure-entitlement security.insecure`,
        );
      }
      security = "insecure";
    }
    const secretEnv: { name: string; value: string }[] = [];
    for (const s of this.e.secretenv) {
      const data = await this.secret(s.ID, s.optional, ctx);
      if (data) secretEnv.push({ name: s.name, value: new TextDecoder().decode(data) });
    }
    const root = this.e.mounts.find((m) => m.dest === "/")!;
    return {
      args: meta.args,
      env: meta.env,
      cwd: meta.cwd || "/",
      user: meta.user,
      hostname: meta.hostname || undefined,
      extraHosts: meta.extraHosts.map((h) => ({ host: h.Host, ip: h.IP })),
      network,
      security,
      readonlyRootfs: root.readonly,
      ulimits: meta.ulimit.map((u) => ({
        name: u.Name.toLowerCase(),
        soft: Number(u.Soft),
        hard: Number(u.Hard),
      })),
      validExitCodes: meta.validExitCodes.length > 0 ? meta.validExitCodes : undefined,
      removeMountStubsRecursive: meta.removeMountStubsRecursive,
      secretEnv,
    };
  }
}
