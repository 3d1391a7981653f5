#!/usr/bin/env bash
# The base images the Dockerfile and the compose file name, python:3.11-slim and postgres:17:
# kept if the engine has them, pulled where a registry answers, else built as stand-ins of the
# same contract from Debian's packages (debootstrap a bookworm rootfs, `docker import`).
# Usage: base_images.sh [WORK_DIR]   (WORK_DIR holds the rootfs while it is built)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="${1:-$(mktemp -d)}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The host's certificate authorities: the package registries are reached through them.
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
LABEL="org.taxi-assets.stand-in=debian-bookworm"

have() { docker image inspect "$1" >/dev/null 2>&1; }
pulled() { timeout 60 docker pull --quiet "$1" >/dev/null 2>&1; }

rootfs() {  # rootfs DIR PACKAGES: a minimal bookworm with PACKAGES and the host's CAs
  local dir="$1" packages="$2"
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  rm -rf "$dir"
  debootstrap --variant=minbase --include="ca-certificates,$packages" bookworm "$dir" "$MIRROR" \
    > "$dir.log" 2>&1 || { tail -n 20 "$dir.log" >&2; return 1; }
  cp "$CA_BUNDLE" "$dir/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
}

python_image() {  # python:3.11-slim: python and pip in /usr/local/bin, pip installs as root
  local dir="$WORK/python"
  rootfs "$dir" python3.11,python3-pip,python3-setuptools
  ln -sf /usr/bin/python3.11 "$dir/usr/local/bin/python"
  ln -sf /usr/bin/python3.11 "$dir/usr/local/bin/python3"
  ln -sf /usr/bin/pip3 "$dir/usr/local/bin/pip"
  rm -f "$dir/usr/lib/python3.11/EXTERNALLY-MANAGED"
  tar -C "$dir" -c . | docker import \
    --change "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change "ENV PIP_CERT=$CA_BUNDLE" --change "ENV SSL_CERT_FILE=$CA_BUNDLE" \
    --change "ENV REQUESTS_CA_BUNDLE=$CA_BUNDLE" \
    --change "LABEL $LABEL" --change 'CMD ["python3"]' - python:3.11-slim >/dev/null
  rm -rf "$dir"
}

postgres_image() {  # postgres:17: the official image's environment and initdb contract
  local dir="$WORK/postgres"
  rootfs "$dir" postgresql-15,gosu
  install -m 755 "$HERE/postgres-entrypoint.sh" "$dir/usr/local/bin/docker-entrypoint.sh"
  mkdir -p "$dir/docker-entrypoint-initdb.d" "$dir/var/lib/postgresql/data"
  # STOPSIGNAL is not a change `docker import` takes on older engines: a build on top sets it.
  tar -C "$dir" -c . | docker import - taxi-assets/postgres-rootfs >/dev/null
  docker build --quiet --tag postgres:17 - >/dev/null <<DOCKERFILE
FROM taxi-assets/postgres-rootfs
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
LABEL $LABEL
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
DOCKERFILE
  docker image rm taxi-assets/postgres-rootfs >/dev/null
  rm -rf "$dir"
}

mkdir -p "$WORK"
pids=()
for image in python:3.11-slim postgres:17; do
  if have "$image" || pulled "$image"; then
    echo "$image: ready"
    continue
  fi
  echo "$image: no registry answers; building a stand-in from Debian's packages"
  case "$image" in
    python:*) python_image & ;;
    postgres:*) postgres_image & ;;
  esac
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for image in python:3.11-slim postgres:17; do have "$image"; done
