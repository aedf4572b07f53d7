/* Private: the stb_image / stb_image_write calls mmpipe uses, wrapped so that the third-party
 * code is compiled alone in core/image_stb.c (see there why). */
#ifndef MMP_IMAGE_STB_H
#define MMP_IMAGE_STB_H
#include <stdint.h>

int mmp__stb_info(const void *data, int size, int *w, int *h, int *comp);
/* Pixels as stored (comp channels); free with mmp__stb_free. NULL on failure. */
uint8_t *mmp__stb_load(const void *data, int size, int *w, int *h, int *comp);
const char *mmp__stb_failure_reason(void);
void mmp__stb_free(void *p);
/* PNG of RGB/RGBA pixels in memory; free with mmp__stb_free. */
uint8_t *mmp__stb_write_png(const uint8_t *px, int stride, int w, int h, int comp, int *len);

#endif
