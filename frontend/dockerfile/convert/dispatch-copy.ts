// COPY and ADD: one file op that copies every source (context paths with wildcards, another
// stage, git repositories and URLs for ADD, heredoc inline files) to the destination, or with
// --link a copy onto an empty layer merged on top, so the layer does not depend on what is below.
import path from "node:path/posix";
import {
  type CopyOptions,
  copy,
  type FileAction,
  git,
  http,
  merge,
  mkfile,
  scratch,
  type State,
} from "../../../llb/index.ts";
import { digestOf } from "../../../util/digest.ts";
import type { CommandOf } from "../instructions/commands.ts";
import { parseChmod, parseOwner } from "./chown.ts";
import { cleanPath } from "./context.ts";
import { processCmdEnv } from "./dispatch-meta.ts";
import { type DispatchOpt, type DispatchState, envOf } from "./dispatch-state.ts";
import { isHTTPSource, parseGitRef } from "./gitref.ts";
import { commitToHistory } from "./image.ts";
import { INTERNAL_NAMES, prefixCommand, uppercaseCmd } from "./progress.ts";

/**
 * A destination made absolute against the working directory; a trailing "/" (or "/.") is kept
 * because it means "into this directory".
 */
export function destPath(workdir: string, p: string): string {
  let target = p;
  if (!target.startsWith("/") && (target === "." || target === "")) target = "./";
  const joined = cleanPath(target.startsWith("/") ? target : path.join(workdir || "/", target));
  if (target.endsWith("/") && !joined.endsWith("/")) return `${joined}/`;
  if (target.endsWith("/.")) return `${joined === "/" ? "" : joined}/.`;
  return joined;
}

/** The file name an ADD of a URL writes: the last path segment, or "__unnamed__". */
export function urlFilename(src: string): string {
  try {
    const base = path.basename(new URL(src).pathname);
    return base === "" || base === "." || base === "/" ? "__unnamed__" : base;
  } catch {
    return "__unnamed__";
  }
}

export function dispatchCopy(
  d: DispatchState,
  c: CommandOf<"copy"> | CommandOf<"add">,
  source: State,
  opt: DispatchOpt,
): void {
  const isAdd = c.kind === "add";
  const { sourcePaths, sourceContents, destPath: rawDest } = c.sources;
  const dest = destPath(d.state.getDir(), rawDest);
  const owner = parseOwner(c.chown);
  const mode = parseChmod(c.chmod);
  const checksum = isAdd ? c.checksum : "";
  if (checksum !== "") {
    if (sourcePaths.length !== 1) throw new Error("checksum can't be specified for multiple sources");
    if (!isHTTPSource(sourcePaths[0]!))
      throw new Error("checksum can't be specified for non-HTTP(S) sources");
    if (!/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(checksum)) {
      throw new Error(`invalid checksum digest format ${JSON.stringify(checksum)}`);
    }
  }
  const parents = c.kind === "copy" && c.parents;
  let msg = isAdd ? "ADD" : "COPY";
  if (parents) msg += " --parents";
  if (c.chown !== "") msg += ` --chown=${c.chown}`;
  if (c.chmod !== "") msg += ` --chmod=${c.chmod}`;

  const platform = d.platform ?? opt.platforms.targetPlatform;
  const env = envOf(d);
  const name = uppercaseCmd(processCmdEnv(opt, c.code, env));
  const progress = { prefixPlatform: opt.prefixPlatform, platform, env };
  const pgName = prefixCommand(d, name, progress);
  const common: CopyOptions = { mode, owner, ...(c.exclude.length > 0 ? { exclude: c.exclude } : {}) };

  let action: FileAction | undefined;
  const add = (from: State, src: string, opts: CopyOptions) => {
    action = action ? action.copy(from, src, dest, opts) : copy(from, src, dest, opts);
  };
  for (const src of sourcePaths) {
    msg += ` ${src}`;
    const gitRef = parseGitRef(src);
    if (gitRef) {
      if (!isAdd) throw new Error("source can't be a git ref for COPY");
      const repo = git(gitRef.remote, gitRef.commit, {
        subdir: gitRef.subdir || undefined,
        keepGitDir: isAdd && c.keepGitDir,
        customName: pgName,
      });
      add(repo, "/", { ...common, createDestPath: true });
    } else if (isHTTPSource(src)) {
      if (!isAdd) throw new Error("source can't be a URL for COPY");
      const filename = urlFilename(src);
      const download = http(src, {
        filename,
        customName: pgName,
        checksum: checksum || undefined,
        description: { "com.docker.dockerfile.v1.command": "" },
      });
      add(download, filename, { ...common, createDestPath: true });
    } else {
      let from = src;
      let include: string[] | undefined;
      if (parents) {
        const pivot = from.indexOf("/./");
        const pattern = pivot < 0 ? from : from.slice(pivot + 3);
        from = pivot < 0 ? "/" : from.slice(0, pivot);
        include = [cleanPath(`/${pattern}`).replace(/^\//, "")];
      }
      add(source, cleanPath(`/${from}`), {
        ...common,
        followSymlink: true,
        dirCopyContents: true,
        ...(include ? { include } : {}),
        attemptUnpack: isAdd,
        createDestPath: true,
        allowWildcard: true,
        allowEmptyWildcard: true,
      });
    }
  }
  for (const doc of sourceContents) {
    msg += ` <<${doc.name}`;
    const file = scratch().file(mkfile(doc.name, 0o644, doc.data), {
      customName: INTERNAL_NAMES.inlineDocument,
      platform: d.platform,
    });
    add(file, doc.name, { ...common, createDestPath: true });
  }
  msg += ` ${rawDest}`;
  if (!action) throw new Error(`${isAdd ? "ADD" : "COPY"} has no source`);

  const ignoreCache = d.ignoreCache ? { ignoreCache: true } : {};
  if (c.link && c.chmod === "") {
    // The copy lands on an empty layer, then that layer is merged on top: the layer's cache key
    // and content do not depend on the layers below (--link).
    const id = digestOf(`${d.stageName}/${d.cmdIndex}/${c.code}`).slice(7, 32);
    d.cmdIndex--;
    const groupName = prefixCommand(d, name, progress);
    const layer = scratch().file(action, {
      platform: d.platform,
      customName: pgName,
      progressGroup: { id, name: groupName, weak: true },
      ...ignoreCache,
    });
    d.cmdIndex--;
    const linkName = prefixCommand(d, `LINK ${name}`, progress);
    d.state = merge([d.state, layer], {
      customName: linkName,
      progressGroup: { id, name: groupName, weak: false },
      ...ignoreCache,
    });
    opt.sourceMap.locations.set(linkName, c.location);
  } else {
    d.state = d.state.file(action, { customName: pgName, platform: d.platform, ...ignoreCache });
  }
  opt.sourceMap.locations.set(pgName, c.location);
  commitToHistory(d.image, msg, { withLayer: true, ranOp: true, created: opt.epoch });
}
