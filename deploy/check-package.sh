#!/usr/bin/env bash
# Install a lapse .deb built by deploy/package.sh, check what it installed, then purge it so the
# machine is left as it was (the `lapse` user too, if this script's install created it).
# Needs root.
#
#   deploy/check-package.sh target/debian/lapse_0.1.0-1_amd64.deb
set -euo pipefail

deb=${1:?usage: $0 PATH/TO/lapse.deb}
fail() {
  echo "check-package: $*" >&2
  exit 1
}

user_existed=false
getent passwd lapse >/dev/null && user_existed=true
cleanup() {
  dpkg --purge lapse >/dev/null 2>&1 || true
  if ! $user_existed && getent passwd lapse >/dev/null; then
    deluser --system --quiet lapse 2>/dev/null || true
  fi
}
trap cleanup EXIT

dpkg -i "$deb"

version=$(dpkg-deb -f "$deb" Version)
out=$(/usr/bin/lapse --version)
echo "$out"
[ "$out" = "lapse ${version%-*}" ] || fail "lapse --version printed '$out', the package is $version"

/usr/bin/lapse config check /etc/lapse/lapse.toml

# The service user: a system account that cannot log in.
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd lapse) || fail "no lapse user"
[ "$uid" -lt 1000 ] || fail "lapse has uid $uid, not a system uid"
[ "$shell" = /usr/sbin/nologin ] || fail "lapse's shell is $shell"
[ "$home" = /var/lib/lapse ] || fail "lapse's home is $home"
mode=$(stat -c '%a %U %G' /var/lib/lapse)
[ "$mode" = "700 lapse lapse" ] || fail "/var/lib/lapse is '$mode', want '700 lapse lapse'"
# ...which the service user can use: its database takes a token.
runuser -u lapse -- /usr/bin/lapse token create --name package-check --role auditor \
  --config /etc/lapse/lapse.toml >/dev/null || fail "the lapse user cannot use /var/lib/lapse"
[ -f /var/lib/lapse/lapse.db ] || fail "no database in /var/lib/lapse"

dpkg-query -W -f='${Conffiles}\n' lapse | grep -q '^ /etc/lapse/lapse.toml ' \
  || fail "/etc/lapse/lapse.toml is not a conffile"
[ -z "$(ls -A /etc/lapse/access-lists.d)" ] || fail "the package installed an active access list"
[ -f /usr/share/doc/lapse/examples/access-lists.d/prod-db-oncall.toml ] || fail "no example list"
grep -q '^ExecStart=/usr/bin/lapse serve ' /usr/lib/systemd/system/lapse.service \
  || fail "the unit does not start /usr/bin/lapse"
zcat /usr/share/man/man1/lapse.1.gz | grep -q '^\.TH lapse 1' || fail "no man page"
grep -q 'complete -F _lapse' /usr/share/bash-completion/completions/lapse || fail "no bash completion"
[ -s /usr/share/zsh/vendor-completions/_lapse ] || fail "no zsh completion"
[ -s /usr/share/fish/vendor_completions.d/lapse.fish ] || fail "no fish completion"

dpkg --purge lapse
[ ! -e /usr/bin/lapse ] || fail "purge left /usr/bin/lapse"
[ ! -e /var/lib/lapse ] || fail "purge left /var/lib/lapse"
[ ! -e /etc/lapse/lapse.toml ] || fail "purge left /etc/lapse/lapse.toml"
echo "check-package: $deb installs, runs and purges cleanly"
