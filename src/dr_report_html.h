/* dr_report_html.h - renders a backtest's report.json as one self-contained
 * report.html (the embedded src/report_template.html plus the JSON). */
#ifndef DR_REPORT_HTML_H
#define DR_REPORT_HTML_H

#include <stddef.h>

/* Largest report.json accepted, in bytes. */
#define DR_REPORT_HTML_MAX_JSON ((size_t)64 << 20)

/* Reads json_path (a regular, non-empty file of at most
 * DR_REPORT_HTML_MAX_JSON bytes that starts with '{'), embeds it in the page
 * template with "</" escaped as "<\/" and "<!--" as "\u003c!--", and writes
 * the page to html_path through a temporary file in the same folder that is
 * renamed over it. The JSON itself is not validated: the page's script shows
 * a parse error instead of plots. Returns 0, or DR_EIO (cannot read or
 * write), DR_EINVAL (empty, too big, not an object, not a regular file) or
 * DR_ENOMEM, with a message naming the file in errstr. */
int dr_report_html_write(const char *json_path, const char *html_path,
                         char *errstr, size_t errstr_size);

#endif /* DR_REPORT_HTML_H */
