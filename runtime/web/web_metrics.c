/* web_metrics.c - GET /metrics (filled in below). */
#include "web/web_int.h"

int web_metrics(web_server *w, jbuf *out, jerr *err) {
    (void)w;
    jbuf_puts(out, "");
    return 0;
}
