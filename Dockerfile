# syntax=docker/dockerfile:1
# The waygate image: the compiled JavaScript and its production dependencies on distroless Node 24,
# run as uid 65532 with nothing to write (the Deployment in examples/kubernetes/ mounts the root
# filesystem read-only). Build: `docker build -t waygate .`
#
# test/ship/runtime-files.test.ts reads this file: it assembles exactly what the last stage's COPY
# lines put into the image, in a temporary directory, and runs `waygate --version`, `serve` and
# `policy check` from it. Change a COPY line here and that test follows; keep the stage names.

ARG NODE_BUILD_IMAGE=node:24-slim
ARG NODE_RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian13:nonroot

# Compiles src/ to dist/ with the development dependencies (TypeScript).
FROM ${NODE_BUILD_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund && npm run build

# The production dependency tree only: no TypeScript, no tsx, no test tools. No install scripts run:
# none of the production dependencies needs one.
FROM ${NODE_BUILD_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# The runtime: no shell, no package manager. Files stay owned by root and read-only to the process.
FROM ${NODE_RUNTIME_IMAGE} AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY package.json ./
COPY bin ./bin
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# The distroless "nonroot" user, numeric so the kubelet can check runAsNonRoot.
USER 65532:65532
# HBONE, metrics, readiness (docs/operating.md).
EXPOSE 15008 15020 15021
ENTRYPOINT ["/nodejs/bin/node", "bin/waygate.js"]
CMD ["serve", "--config", "/etc/waygate/config/gateway.yaml"]
