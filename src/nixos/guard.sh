# nixmox's activation guard, run detached on the host (setsid): it outlives
# the SSH session and nixmox itself.
#
#   guard.sh DIR SYSTEM GOAL PREVIOUS GENERATION TIMEOUT PROFILE RECORDS
#
# It activates SYSTEM (switch-to-configuration GOAL, activations on a host
# taking turns under RUN/activation.lock), writes the exit status to
# DIR/status, then waits for nixmox's decision. nixmox touches DIR/alive
# whenever it reaches the host and decides by creating the directory
# DIR/decided: `mkdir` is atomic, so exactly one of nixmox and the guard
# decides. When nixmox has not been heard from for TIMEOUT seconds, the
# guard decides itself: the system profile back to GENERATION (the one that
# points at PREVIOUS; one back when it is not known), PREVIOUS activated, and a record left in RECORDS/<id> (time, systems,
# generation, why) where the next look of nixmox finds it. Without a
# PREVIOUS (a first deploy) there is nothing to go back to: it only reports.
set -u
dir=$1 system=$2 goal=$3 previous=$4 prev_gen=$5 timeout=$6 profile=$7 records=$8
run=$(dirname "$dir")
id=$(basename "$dir")

flock -o "$run/activation.lock" "$system/bin/switch-to-configuration" "$goal" >"$dir/log" 2>&1
echo $? >"$dir/status.tmp" && mv "$dir/status.tmp" "$dir/status"
touch "$dir/alive"

while :; do
  [ -d "$dir/decided" ] && exit 0
  now=$(date +%s)
  seen=$(stat -c %Y "$dir/alive" 2>/dev/null || echo 0)
  [ $((now - seen)) -ge "$timeout" ] && break
  sleep 1
done

# Not heard from in time: decide, unless nixmox just did.
mkdir "$dir/decided" 2>/dev/null || exit 0
if [ -z "$previous" ]; then
  echo "unconfirmed" >"$dir/decision"
  exit 0
fi
echo "rollback" >"$dir/decision"
mkdir -p "$records"
{
  if [ -n "$prev_gen" ]; then
    nix-env -p "$profile" --switch-generation "$prev_gen"
  else
    nix-env -p "$profile" --rollback
  fi &&
    flock -o "$run/activation.lock" "$previous/bin/switch-to-configuration" switch
} >"$dir/rollback.log" 2>&1
rc=$?
generation=$(readlink "$profile" 2>/dev/null | sed -n 's/.*-\([0-9]*\)-link$/\1/p')
{
  echo "time=$(date +%s)"
  echo "from=$system"
  echo "to=$previous"
  echo "generation=$generation"
  echo "timeout=$timeout"
  echo "status=$rc"
} >"$records/$id.tmp" && mv "$records/$id.tmp" "$records/$id"
echo "done" >"$dir/rolled-back"
