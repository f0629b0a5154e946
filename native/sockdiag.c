/*
 * Connected and listening unix stream sockets of this network namespace, with their peers, read through the
 * kernel's sock_diag netlink interface (what `ss -x` uses). /proc/net/unix lists sockets but never
 * their peers; only sock_diag says which socket is connected to which, and which file a server-side
 * socket was accepted on (UNIX_DIAG_VFS: the bound socket file's device and inode, copied to every
 * accepted socket). Read-only: a dump request needs no privilege. A listener lives in its server's
 * namespace while an accepted socket lives in its client's, so only a listener seen here proves that
 * the server shares this namespace.
 *
 * unixStreamPeers() → Uint32Array, 4 numbers per connected socket or bound listener: inode, peer inode
 * (0 for a listener), vfs device (the kernel's dev_t: major << 20 | minor; 0 when the socket has no
 * file), vfs inode (low 32 bits).
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FIELDS 4
#define RECV_BUFFER (32 * 1024)

struct rows {
  uint32_t *data;
  size_t count;
  size_t capacity;
};

static int push_row(struct rows *rows, uint32_t ino, uint32_t peer, uint32_t vfs_dev, uint32_t vfs_ino) {
  if (rows->count == rows->capacity) {
    size_t capacity = rows->capacity == 0 ? 256 : rows->capacity * 2;
    uint32_t *grown = realloc(rows->data, capacity * FIELDS * sizeof(uint32_t));
    if (grown == NULL) return -ENOMEM;
    rows->data = grown;
    rows->capacity = capacity;
  }
  uint32_t *row = rows->data + rows->count * FIELDS;
  row[0] = ino;
  row[1] = peer;
  row[2] = vfs_dev;
  row[3] = vfs_ino;
  rows->count++;
  return 0;
}

/* One reply message: its peer and vfs attributes, when present. */
static int read_message(struct rows *rows, const struct nlmsghdr *h) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg))) return -EBADMSG;
  const struct unix_diag_msg *msg = NLMSG_DATA(h);
  uint32_t peer = 0, vfs_dev = 0, vfs_ino = 0;
  int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *msg));
  for (const struct rtattr *attr = (const struct rtattr *)(msg + 1); RTA_OK(attr, len); attr = RTA_NEXT(attr, len)) {
    if (attr->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(attr) >= sizeof(uint32_t)) {
      memcpy(&peer, RTA_DATA(attr), sizeof peer);
    } else if (attr->rta_type == UNIX_DIAG_VFS && RTA_PAYLOAD(attr) >= sizeof(struct unix_diag_vfs)) {
      struct unix_diag_vfs vfs;
      memcpy(&vfs, RTA_DATA(attr), sizeof vfs);
      vfs_dev = vfs.udiag_vfs_dev;
      vfs_ino = vfs.udiag_vfs_ino;
    }
  }
  /* A listener without a file (abstract, unbound) can name no server: left out like unconnected sockets. */
  if (peer == 0 && (msg->udiag_state != TCP_LISTEN || (vfs_dev == 0 && vfs_ino == 0))) return 0;
  return push_row(rows, msg->udiag_ino, peer, vfs_dev, vfs_ino);
}

/* The whole dump into rows; 0 or a negative errno. */
static int dump(struct rows *rows) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return -errno;
  struct {
    struct nlmsghdr header;
    struct unix_diag_req body;
  } request;
  memset(&request, 0, sizeof request);
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = 1;
  request.body.sdiag_family = AF_UNIX;
  request.body.udiag_states = (1u << TCP_ESTABLISHED) | (1u << TCP_LISTEN);
  request.body.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_VFS;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, &request, sizeof request, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  char *buffer = malloc(RECV_BUFFER);
  int result = buffer == NULL ? -ENOMEM : 1;
  while (result > 0) {
    ssize_t got = recv(fd, buffer, RECV_BUFFER, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      result = -errno;
      break;
    }
    if (got == 0) {
      result = -EBADMSG; /* the kernel ends a dump with NLMSG_DONE, never with EOF */
      break;
    }
    int left = (int)got;
    for (const struct nlmsghdr *h = (const struct nlmsghdr *)buffer; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        result = 0;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *error = NLMSG_DATA(h);
        result = h->nlmsg_len >= NLMSG_LENGTH(sizeof *error) && error->error != 0 ? error->error : -EBADMSG;
        break;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      int err = read_message(rows, h);
      if (err < 0) {
        result = err;
        break;
      }
    }
  }
  free(buffer);
  close(fd);
  return result;
}

static napi_value unix_stream_peers(napi_env env, napi_callback_info info) {
  struct rows rows = {0};
  napi_value result = NULL;
  int err = dump(&rows);
  if (err < 0) {
    char message[128];
    snprintf(message, sizeof message, "sock_diag dump of unix sockets failed: %s", strerror(-err));
    napi_throw_error(env, "PTYR_SOCK_DIAG", message);
    free(rows.data);
    return NULL;
  }
  size_t bytes = rows.count * FIELDS * sizeof(uint32_t);
  napi_value buffer;
  void *data = NULL;
  if (napi_create_arraybuffer(env, bytes, &data, &buffer) == napi_ok) {
    if (bytes > 0) memcpy(data, rows.data, bytes);
    if (napi_create_typedarray(env, napi_uint32_array, rows.count * FIELDS, buffer, 0, &result) != napi_ok) result = NULL;
  }
  free(rows.data);
  if (result == NULL) napi_throw_error(env, "PTYR_SOCK_DIAG", "could not build the result");
  return result;
}

/* Context-aware, no global state: loadable in any thread. */
NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "unixStreamPeers", NAPI_AUTO_LENGTH, unix_stream_peers, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "unixStreamPeers", fn) != napi_ok) return NULL;
  return exports;
}
