#!/bin/sh
# The `measure` target of ../cortex-m4 and ../rv32 (Makefile.fragment): prints an image's
#   flash_bytes = text + data - .qsnn_samples   (Berkeley size; the samples lie outside the flash)
#   ram_bytes   = .data + .bss + __heap_size + the stack high-water main.c measured
#   KEY         = COUNTS_TO_INSTRUCTIONS * counts inside the inferences / samples
# usage: sh measure.sh SIZE NM ELF LOG COUNTER COUNTS_TO_INSTRUCTIONS KEY
# where LOG holds main.c's lines "stack_bytes=N" and "COUNTER=N samples=N".
set -eu
size=$1 nm=$2 elf=$3 log=$4 counter=$5 scale=$6 key=$7
"$size" "$elf"
"$size" -A "$elf" | awk '$1 ~ /^\.(data|bss|qsnn_samples)$/ { print "section " $1 " " $2 }'
section() { "$size" -A "$elf" | awk -v name="$1" '$1 == name { print $2 }'; }
set -- $("$size" "$elf" | awk 'NR == 2 { print $1, $2 }')
samples=$(section .qsnn_samples)
flash=$(($1 + $2 - ${samples:-0}))
data=$(section .data)
bss=$(section .bss)
heap=$((0x$("$nm" "$elf" | awk '$3 == "__heap_size" { print $1 }')))
stack=$(sed -n 's/^stack_bytes=//p' "$log")
counts=$(sed -n "s/^$counter=\([0-9]*\) samples=.*/\1/p" "$log")
count=$(sed -n "s/^$counter=.* samples=\([0-9]*\)/\1/p" "$log")
echo "flash_bytes=$flash (samples ${samples:-0} apart)"
echo "ram_bytes=$((${data:-0} + ${bss:-0} + heap + stack)) (data ${data:-0} + bss ${bss:-0} + heap $heap + stack $stack)"
echo "$key=$((counts * scale / count)) ($counts $counter, $count samples)"
