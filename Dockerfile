# syntax=docker/dockerfile:1
# Yilian Hub: one image for every role. The command picks it:
#   serve --api-only        HTTP API on 8080
#   serve --listeners-only  MLLP / file-drop listeners from the configuration
#   worker                  pipeline workers

# ---- build: all dependencies, compile TypeScript to dist/ ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
# Application sources only, the six floors of docs/architecture.md (test/ and bench/ are not shipped).
COPY cli ./cli
COPY api ./api
COPY adapters ./adapters
COPY pipeline ./pipeline
COPY hub ./hub
COPY mappings ./mappings
RUN npx tsc -p .

# ---- runtime: production dependencies and dist/ only ----
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist ./dist
# Data the code reads from the tree beside dist/ (mappings/terminology/shipped.ts): the shipped
# ConceptMaps, the LOINC subset and the WHO extract with their notices. Without them the map stage
# cannot start in the image.
COPY mappings/conceptmaps ./mappings/conceptmaps
COPY mappings/terminology/data ./mappings/terminology/data
# The nickname list the patient index compares Latin given names with (hub/mpi/nicknames.ts), with its licence.
COPY data ./data
# The file-drop volume is mounted here; owned by `node` so a fresh named volume is writable
# (the drop-folder channel creates <dir>, <dir>/archive and <dir>/error).
RUN mkdir -p /var/lib/yilian/drop /etc/yilian \
    && chown -R node:node /var/lib/yilian
USER node
EXPOSE 8080 2575 2576 2577
ENTRYPOINT ["node", "dist/cli/yilian.js"]
CMD ["serve"]
