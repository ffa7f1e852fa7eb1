// Where the BuildKit LLB compatibility corpus lives: ../shared/compat/llb beside the checkout
// when present (it may be updated between sessions), else the copy vendored in test/compat/llb
// so a clone alone can run the tests.
import { existsSync } from "node:fs";
import { join } from "node:path";

const shared = join(import.meta.dirname, "../../shared/compat/llb");
const vendored = join(import.meta.dirname, "compat/llb");

export const COMPAT_LLB_DIR = existsSync(join(shared, "README.md")) ? shared : vendored;
