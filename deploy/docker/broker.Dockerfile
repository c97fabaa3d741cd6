# syntax=docker/dockerfile:1
#
# The TrustPlane broker image (`trustplane-broker` = `trustplane broker serve`): the sidecar in a
# caller's pod that signs request-bound passports over a Unix socket (docs/broker.md).
#
# Contents: Node.js 20 and the packed @trustplane/{core,adapter,broker,issuer,cli} packages
# installed with their production dependencies only (the same packages as the adapter image;
# the entry point differs). No npm, no sources, no keys: the broker's signing key is mounted
# from a Secret at run time. Runs as uid/gid 10001 on a read-only root filesystem: mount the
# socket directory (/run/trustplane, shared with the caller) and /tmp as emptyDir/tmpfs.
#
# Build from the repository root (deploy/docker/README.md: pinning and publishing by digest):
#   docker buildx build -f deploy/docker/broker.Dockerfile \
#     --build-arg NODE_IMAGE=node:20-bookworm-slim@sha256:<digest> -t <registry>/trustplane/broker:<version> .

# The base image, pinned by digest; the placeholder makes an unpinned build fail on purpose.
ARG NODE_IMAGE=node:20-bookworm-slim@sha256:PIN_ME_SEE_deploy_docker_README

# ---- build: compile the workspaces and pack the ones the CLI needs at run time ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc tsconfig.base.json ./
COPY packages/ packages/
RUN npm ci --ignore-scripts --no-audit --no-fund
RUN npm run build
RUN mkdir /pack && npm pack --ignore-scripts --pack-destination /pack \
      -w @trustplane/core -w @trustplane/adapter -w @trustplane/broker -w @trustplane/issuer -w @trustplane/cli

# ---- install: only the tarballs and their production dependencies ----
FROM ${NODE_IMAGE} AS install
WORKDIR /opt/trustplane
COPY --from=build /pack/ /tmp/pack/
# --ignore-scripts is safe: sodium-native ships prebuilt binaries and has no install script;
# @grpc/grpc-js (the SPIFFE Workload API client) is pure JavaScript.
RUN echo '{"name":"trustplane-image","version":"0.0.0","private":true}' > package.json \
 && npm install --omit=dev --ignore-scripts --no-audit --no-fund /tmp/pack/*.tgz \
 && rm -rf /tmp/pack

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /opt/yarn* /usr/local/bin/yarn /usr/local/bin/yarnpkg \
 && groupadd --gid 10001 trustplane \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin trustplane \
 && install -d -o 10001 -g 10001 -m 0750 /run/trustplane
COPY --from=install --chown=0:0 /opt/trustplane /opt/trustplane
ENV NODE_ENV=production \
    TRUSTPLANE_BROKER_SOCKET=/run/trustplane/broker.sock
WORKDIR /tmp
USER 10001:10001
# Healthy while the socket exists (the broker serves no TCP port).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "process.exit(require('node:fs').statSync(process.env.TRUSTPLANE_BROKER_SOCKET,{throwIfNoEntry:false})?.isSocket()?0:1)"]
# SIGTERM: stop gracefully and remove the socket.
ENTRYPOINT ["node", "/opt/trustplane/node_modules/@trustplane/cli/bin/trustplane-broker.js"]
