// Which parts of which commands get variable expansion, as in BuildKit: ENV, LABEL, COPY, ADD,
// WORKDIR, USER, VOLUME and STOPSIGNAL expand their words one to one; heredoc bodies of COPY
// and ADD expand without quote processing when their delimiter was not quoted. RUN mounts,
// ARG and EXPOSE are expanded where they are converted, since their rules differ.
import type { Command, SourcesAndDest } from "./commands.ts";

/** Expands one word to one word; throws on malformed expressions. */
export type WordExpander = (word: string) => string;

function expandSources(s: SourcesAndDest, expand: WordExpander, expandRaw: WordExpander): SourcesAndDest {
  return {
    sourcePaths: s.sourcePaths.map(expand),
    sourceContents: s.sourceContents.map((f) => (f.expand ? { ...f, data: expandRaw(f.data) } : f)),
    destPath: expand(s.destPath),
  };
}

/**
 * The command with its expandable words expanded. `expandRaw` is used for heredoc bodies
 * (quotes are not special there). Commands without expansion are returned as they are.
 */
export function expandCommand(cmd: Command, expand: WordExpander, expandRaw: WordExpander = expand): Command {
  switch (cmd.kind) {
    case "env":
      return { ...cmd, env: cmd.env.map((kv) => ({ ...kv, key: expand(kv.key), value: expand(kv.value) })) };
    case "label":
      return {
        ...cmd,
        labels: cmd.labels.map((kv) => ({ ...kv, key: expand(kv.key), value: expand(kv.value) })),
      };
    case "add":
      return {
        ...cmd,
        chown: expand(cmd.chown),
        chmod: expand(cmd.chmod),
        checksum: expand(cmd.checksum),
        exclude: cmd.exclude.map(expand),
        sources: expandSources(cmd.sources, expand, expandRaw),
      };
    case "copy":
      return {
        ...cmd,
        chown: expand(cmd.chown),
        chmod: expand(cmd.chmod),
        from: expand(cmd.from),
        exclude: cmd.exclude.map(expand),
        sources: expandSources(cmd.sources, expand, expandRaw),
      };
    case "workdir":
      return { ...cmd, path: expand(cmd.path) };
    case "user":
      return { ...cmd, user: expand(cmd.user) };
    case "volume":
      return { ...cmd, volumes: cmd.volumes.map(expand) };
    case "stopsignal":
      return { ...cmd, signal: expand(cmd.signal) };
    default:
      return cmd;
  }
}
