# syntax=docker/dockerfile:1
#
# The TrustPlane adapter image: the verifying reverse proxy (`trustplane-adapter`).
#
# Contents: Node.js 20 and the packed @trustplane/{core,adapter,broker,issuer,cli} packages
# installed with their production dependencies only. No npm, no sources, no bundles, no keys:
# bundles are mounted at run time (the Helm chart mounts them from a ConfigMap or Secret).
# Runs as uid/gid 10001 and writes nothing outside /tmp, so it runs on a read-only root
# filesystem (mount /tmp as an emptyDir/tmpfs).
#
# Build from the repository root (deploy/docker/README.md: pinning and publishing by digest):
#   docker buildx build -f deploy/docker/adapter.Dockerfile \
#     --build-arg NODE_IMAGE=node:20-bookworm-slim@sha256:<digest> -t <registry>/trustplane/adapter:<version> .

# The base image, pinned by digest. The placeholder is not a valid digest on purpose: an
# unpinned build fails instead of silently using whatever the tag points at today.
ARG NODE_IMAGE=node:20-bookworm-slim@sha256:PIN_ME_SEE_deploy_docker_README

# ---- build: compile the workspaces and pack the ones the CLI needs at run time ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc tsconfig.base.json ./
COPY packages/ packages/
# --ignore-scripts: the root `prepare` would build now; the build is the next step.
RUN npm ci --ignore-scripts --no-audit --no-fund
RUN npm run build
RUN mkdir /pack && npm pack --ignore-scripts --pack-destination /pack \
      -w @trustplane/core -w @trustplane/adapter -w @trustplane/broker -w @trustplane/issuer -w @trustplane/cli

# ---- install: only the tarballs and their production dependencies ----
FROM ${NODE_IMAGE} AS install
WORKDIR /opt/trustplane
COPY --from=build /pack/ /tmp/pack/
# --ignore-scripts is safe: no runtime dependency needs an install script. sodium-native (the
# optional, faster Ed25519 backend) ships prebuilt binaries in its package and loads them at
# run time; without it the adapter uses node:crypto.
RUN echo '{"name":"trustplane-image","version":"0.0.0","private":true}' > package.json \
 && npm install --omit=dev --ignore-scripts --no-audit --no-fund /tmp/pack/*.tgz \
 && rm -rf /tmp/pack

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
# No package manager at run time.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /opt/yarn* /usr/local/bin/yarn /usr/local/bin/yarnpkg \
 && groupadd --gid 10001 trustplane \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin trustplane
COPY --from=install --chown=0:0 /opt/trustplane /opt/trustplane
ENV NODE_ENV=production \
    TRUSTPLANE_LISTEN=0.0.0.0:8080 \
    TRUSTPLANE_ADMIN_LISTEN=0.0.0.0:9090
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 9090
# GET /healthz on the admin port (taken from TRUSTPLANE_ADMIN_LISTEN); node, no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const a=process.env.TRUSTPLANE_ADMIN_LISTEN||'127.0.0.1:9090';fetch('http://127.0.0.1:'+a.slice(a.lastIndexOf(':')+1)+'/healthz').then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"]
# Node is PID 1 and handles SIGTERM itself: stop accepting, drain for up to 10 s, exit 0.
ENTRYPOINT ["node", "/opt/trustplane/node_modules/@trustplane/cli/bin/trustplane-adapter.js"]
