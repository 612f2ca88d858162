// Text metrics shared by the layout and the SVG writer. No browser measures the text at render
// time, so widths are estimated: the diagrams use a monospace font, whose advance is about 0.6 em
// for every character, and the estimate is rounded up so a label never outgrows its box.

export const FONT_SIZE = 12;
export const TITLE_FONT_SIZE = 14;
/** Advance of one character of a monospace font, as a fraction of its size. */
export const CHAR_EM = 0.6;
export const LINE_H = 16;

export const textWidth = (text: string, fontSize = FONT_SIZE): number => text.length * CHAR_EM * fontSize;

/** Width and height of a block of lines, without padding. */
export function linesSize(lines: readonly string[]): { w: number; h: number } {
  return { w: Math.max(0, ...lines.map((l) => textWidth(l))), h: lines.length * LINE_H };
}
