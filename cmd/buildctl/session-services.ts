// Session services buildctl offers beyond secrets: file sync for --local and receivers for
// outputs. Each registers itself with addSessionExtension.
import { fileSyncRoutes } from "../../session/filesync/send.ts";
import { addSessionExtension } from "./build.ts";

addSessionExtension((r, { locals }) => {
  if (Object.keys(locals).length > 0) fileSyncRoutes(locals)(r);
});
