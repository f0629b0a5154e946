# ptyreaper as a container image, for the DaemonSet in deploy/kubernetes/. Multi-stage: the builder
# compiles TypeScript and the native scan addon; the final stage has the production dependencies only.
# Builds with the classic builder and with BuildKit. Base images are build arguments so a site without
# Docker Hub can name its own (the tests make local stand-ins: scripts/make-local-node-images.sh).
ARG NODE_BUILD_IMAGE=node:20-bookworm
ARG NODE_RUNTIME_IMAGE=node:20-bookworm-slim

FROM ${NODE_BUILD_IMAGE} AS build
WORKDIR /src
# node-gyp takes the image's own Node headers instead of downloading them.
ENV npm_config_nodedir=/usr/local npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
COPY package.json package-lock.json ./
# Scripts run below, once the sources are here; this layer is reused while the lockfile is unchanged.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json binding.gyp ./
COPY native ./native
COPY scripts/write-revision.mjs scripts/stage-program.mjs ./scripts/
COPY src ./src
# The addons are optional for `npm install` but not for the image (checked when staging, below). unix-dgram
# (systemd notification) is left out: no systemd here.
RUN npm run build \
 && npm run install \
 && npm prune --omit=dev --omit=optional \
 && rm -rf node_modules/.package-lock.json \
 && find node_modules -depth -type d -empty -delete
# What the program ships besides dist/, copied after the build so an edit of the docs rebuilds nothing.
COPY proto ./proto
COPY config ./config
COPY systemd ./systemd
COPY docs ./docs
COPY README.md LICENSE ./
# The program is staged by the same code as `ptyreaper install` (src/shipped.ts lists what ships), so the
# image and an installed copy hold the same files; staging fails rather than ship the slower JS scan or
# kill(2) signalling. The BPF object is shipped when the build image has clang.
RUN mkdir -p /stage && node scripts/stage-program.mjs /stage/ptyreaper ptyscan pidfd sockdiag

FROM ${NODE_RUNTIME_IMAGE}
WORKDIR /opt/ptyreaper
COPY --from=build /stage/ptyreaper ./
COPY deploy/container/config.yaml /etc/ptyreaper/config.yaml
# Two malloc arenas instead of one per thread, as the systemd unit sets (docs/reliability.md).
ENV MALLOC_ARENA_MAX=2 NODE_ENV=production
# Root, but with no capability beyond the three the runtime adds (docker run --cap-drop ALL --cap-add
# KILL --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH; the DaemonSet's securityContext): uid 0 is what
# lets it connect to the runtime's socket (root:docker 0660, root:root 0660 for containerd) without
# CAP_DAC_OVERRIDE or a host-specific group. See README "Run in Kubernetes".
USER 0:0
EXPOSE 9724
ENTRYPOINT ["node", "--max-semi-space-size=1", "--optimize-for-size", "--single-threaded-gc", "--max-opt=1", "/opt/ptyreaper/dist/main.js"]
CMD ["run", "--config", "/etc/ptyreaper/config.yaml"]
