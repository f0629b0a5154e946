/*
 * pidfd_open / pidfd_send_signal for the reaper: a pidfd pins one process, so a signal sent through
 * it can never reach another process that got the same pid after the identity check.
 *
 * Exports (all synchronous; errors are returned as negative errno values, never thrown, so the
 * caller decides what "gone" or "unsupported" means):
 *   open(pid)              -> fd >= 0, or -errno (ESRCH: no such process; ENOSYS: kernel < 5.3)
 *   sendSignal(fd, signal) -> 0, or -errno (ESRCH: the pinned process has exited)
 *   close(fd)              -> 0, or -errno
 * Signal 0 checks that the pinned process is still alive without signalling it.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

static int int_arg(napi_env env, napi_callback_info info, size_t want, int32_t *out) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return -1;
  for (size_t i = 0; i < want; i++) {
    if (napi_get_value_int32(env, argv[i], &out[i]) != napi_ok) return -1;
  }
  return 0;
}

static napi_value result(napi_env env, long value) {
  napi_value out;
  napi_create_int32(env, (int32_t)value, &out);
  return out;
}

static napi_value bad_args(napi_env env, const char *what) {
  napi_throw_type_error(env, NULL, what);
  return NULL;
}

static napi_value pidfd_open_js(napi_env env, napi_callback_info info) {
  int32_t args[1];
  if (int_arg(env, info, 1, args) != 0 || args[0] <= 0) return bad_args(env, "open(pid): pid must be a positive integer");
  long fd = syscall(SYS_pidfd_open, (pid_t)args[0], 0);
  return result(env, fd < 0 ? -errno : fd);
}

static napi_value pidfd_send_signal_js(napi_env env, napi_callback_info info) {
  int32_t args[2];
  if (int_arg(env, info, 2, args) != 0 || args[0] < 0 || args[1] < 0) return bad_args(env, "sendSignal(fd, signal): integers expected");
  long rc = syscall(SYS_pidfd_send_signal, args[0], args[1], NULL, 0);
  return result(env, rc < 0 ? -errno : 0);
}

static napi_value close_js(napi_env env, napi_callback_info info) {
  int32_t args[1];
  if (int_arg(env, info, 1, args) != 0 || args[0] < 0) return bad_args(env, "close(fd): fd must be a non-negative integer");
  return result(env, close(args[0]) < 0 ? -errno : 0);
}

/* Context-aware, no global state: loadable in any thread. */
NAPI_MODULE_INIT() {
  const struct { const char *name; napi_callback fn; } exported[] = {
    { "open", pidfd_open_js },
    { "sendSignal", pidfd_send_signal_js },
    { "close", close_js },
  };
  for (size_t i = 0; i < sizeof exported / sizeof exported[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, exported[i].name, NAPI_AUTO_LENGTH, exported[i].fn, NULL, &fn) != napi_ok) return NULL;
    if (napi_set_named_property(env, exports, exported[i].name, fn) != napi_ok) return NULL;
  }
  return exports;
}
