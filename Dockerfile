# syntax=docker/dockerfile:1.7
# One image for every service: `docker run seckill <service>` runs
# dist/services/<service>/src/main.js (gateway, auth, seckill-app, seckill-core, order, admin,
# or cli for `seckill migrate` / `seckill load`).
#
#   docker build -t seckill .
#   docker run --rm -e REDIS_URL=… seckill seckill-core
#
# Base: Debian bookworm-slim rather than Alpine: glibc like CI and the developers' machines
# (native modules and their prebuilt binaries, if one comes in, work as tested), and musl's
# resolver has had Kubernetes DNS quirks (search domains, no TCP fallback before musl 1.2.4).
# Pin NODE_IMAGE to a digest in production builds.
ARG NODE_IMAGE=node:24-bookworm-slim

# ---------------------------------------------------------------------------------------------
# Dependencies: `npm ci` installs exactly package-lock.json (which lists every platform's
# optional packages) and fails if it is out of date. --ignore-scripts: no dependency needs an
# install script.
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts

# Production dependencies only: the runtime's node_modules. The smoke test in deploy/test runs
# this same command in a temporary folder and starts a service from it.
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts

# ---------------------------------------------------------------------------------------------
# Build: protobuf-es code from proto/ (buf, offline), tsc into dist/, and the web pages
# (esbuild) into dist/web, which the gateway serves (WEB_ROOT).
FROM deps AS build
COPY buf.yaml buf.gen.yaml tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY proto ./proto
COPY services ./services
COPY web ./web
RUN npm run build && npm run build:web

# ---------------------------------------------------------------------------------------------
# Runtime: node, the production node_modules and dist/ (with dist/web), owned by root and read-only for the
# service user; nothing is written outside /tmp, so readOnlyRootFilesystem works.
FROM ${NODE_IMAGE} AS runtime
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="seckill" \
      org.opencontainers.image.description="Seckill flash-sale services (one image, the service is the first argument)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# npm and corepack are not needed to run: fewer files, fewer CVEs to triage.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack
WORKDIR /app
# WEB_ROOT is relative to WORKDIR; only the gateway reads it.
ENV NODE_ENV=production \
    VERSION=${VERSION} \
    HOST=0.0.0.0 \
    PORT=8080 \
    HTTP1_PORT=8081 \
    METRICS_PORT=9090 \
    WEB_ROOT=dist/web
COPY --from=prod-deps /src/node_modules ./node_modules
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/dist ./dist
# The image's `node` user (uid 1000); the chart runs as 1000 too (runAsNonRoot needs a number).
USER 1000:1000
EXPOSE 8080 8081 9090
# node is PID 1 (exec): the services handle SIGTERM / SIGINT themselves and start no children.
ENTRYPOINT ["/bin/sh", "-c", "main=\"dist/services/${1:-}/src/main.js\"; if [ -z \"${1:-}\" ] || [ ! -f \"$main\" ]; then echo \"usage: <service> [args...]; services: $(cd dist/services && ls -d */src/main.js | cut -d/ -f1 | tr '\\n' ' ')\" >&2; exit 64; fi; shift; exec node \"$main\" \"$@\"", "seckill"]
CMD ["gateway"]
