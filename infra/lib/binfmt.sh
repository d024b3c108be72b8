# binfmt.sh — sourced, not run: lets the kernel start arm64 programs through qemu-user (binfmt_misc), so an
# arm64 program run under qemu can itself start arm64 programs (pg_dumpall runs pg_dump; backstop runs all four).
#
#   binfmt_aarch64_register QEMU PROBE...   mounts binfmt_misc if needed and registers an aarch64 handler for
#                                           QEMU unless an enabled one exists; then PROBE (a command that runs an
#                                           arm64 program directly) must succeed. Returns 1 with BINFMT_WHY set
#                                           when any of that is impossible here.
#   binfmt_aarch64_cleanup                  removes what register added (call it from the caller's EXIT trap).
# Needs root. Used by infra/pg-layer/test.sh and infra/image/test.sh.

# ELF, 64-bit, little-endian, ET_EXEC/ET_DYN, EM_AARCH64 (as Debian's qemu-user-static registers it).
BINFMT_MAGIC='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
BINFMT_MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
BINFMT_ENTRY=""
BINFMT_MOUNTED=0
BINFMT_WHY=""

binfmt_aarch64_register() { # run in the caller's shell (not $(...)): cleanup needs BINFMT_ENTRY/BINFMT_MOUNTED
    local qemu=$1 bm=/proc/sys/fs/binfmt_misc e have=0
    shift
    if [ ! -e "$bm/register" ]; then
        if ! mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null; then
            BINFMT_WHY="cannot mount binfmt_misc on $bm"
            return 1
        fi
        BINFMT_MOUNTED=1
    fi
    if [ "$(cat "$bm/status" 2>/dev/null)" != enabled ]; then
        BINFMT_WHY="binfmt_misc is disabled"
        return 1
    fi
    for e in "$bm"/*; do
        case "$(basename "$e")" in register | status) continue ;; esac
        if grep -qx enabled "$e" && grep -q '^magic 7f454c460201010000000000000000000200b700' "$e"; then
            have=1
        fi
    done
    if [ "$have" -eq 0 ]; then
        BINFMT_ENTRY="backstop-aarch64-$$"
        if ! printf ':%s:M::%s:%s:%s:F\n' "$BINFMT_ENTRY" "$BINFMT_MAGIC" "$BINFMT_MASK" "$qemu" >"$bm/register" 2>/dev/null; then
            BINFMT_ENTRY=""
            BINFMT_WHY="cannot register an aarch64 handler in binfmt_misc"
            return 1
        fi
    fi
    if ! "$@" >/dev/null 2>&1; then
        BINFMT_WHY="the kernel does not run arm64 programs through qemu even with binfmt_misc"
        return 1
    fi
}

binfmt_aarch64_cleanup() {
    if [ -n "$BINFMT_ENTRY" ] && [ -e "/proc/sys/fs/binfmt_misc/$BINFMT_ENTRY" ]; then
        echo -1 >"/proc/sys/fs/binfmt_misc/$BINFMT_ENTRY" || true
    fi
    BINFMT_ENTRY=""
    if [ "$BINFMT_MOUNTED" -eq 1 ]; then
        umount /proc/sys/fs/binfmt_misc || true
    fi
    BINFMT_MOUNTED=0
}
