# MovieLens ratings (user, item, rating, timestamp; comma- or tab-separated, with a header)
# to DSSTNE's text format: one line per user, "user<TAB>item,timestamp:item,timestamp:...",
# users in the order they first appear. The input need not be sorted.
BEGIN { FS = "[,\t]" }
NR == 1 { next }
{
    sub(/\r$/, "")
    if (!($1 in items)) {
        order[++users] = $1
        items[$1] = $2 "," $4
    } else {
        items[$1] = items[$1] ":" $2 "," $4
    }
}
END {
    for (u = 1; u <= users; u++) print order[u] "\t" items[order[u]]
}
