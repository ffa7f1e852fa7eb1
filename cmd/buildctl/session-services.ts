// Session services buildctl offers beyond secrets: file sync for --local and receivers for
// outputs. Each registers itself with addSessionExtension when it lands.
