{
  "targets": [
    {
      "target_name": "ptyscan",
      "sources": ["native/ptyscan.c", "native/ptyfinder.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpthread", "-ldl"]
    },
    {
      "target_name": "pidfd",
      "sources": ["native/pidfd.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "sockdiag",
      "sources": ["native/sockdiag.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
