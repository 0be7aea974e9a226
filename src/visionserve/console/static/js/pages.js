// Draw a document's pages (PDF through the vendored pdf.js, or an image) with boxes over them.
import * as pdfjs from "../vendor/pdfjs/pdf.min.mjs";
import { el } from "./common.js";

pdfjs.GlobalWorkerOptions.workerSrc = new URL("../vendor/pdfjs/pdf.worker.min.mjs", import.meta.url).href;

const isPdf = (bytes) => bytes[0] === 0x25 && bytes[1] === 0x50 && bytes[2] === 0x44 && bytes[3] === 0x46; // %PDF

/**
 * Open a document from its bytes (a PDF or an image).
 * @returns {{pageCount: number, kind: "pdf"|"image", render: (n: number, cssWidth: number) => Promise<object>}}
 *   ``render`` gives {wrap, cssWidth, cssHeight, pointsWidth (PDF), naturalWidth (image)}.
 */
export async function openDocument(bytes, mime = "") {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (isPdf(data)) {
    const pdf = await pdfjs.getDocument({ data: data.slice() }).promise;
    return {
      kind: "pdf",
      pageCount: pdf.numPages,
      async render(n, cssWidth) {
        const page = await pdf.getPage(n);
        const base = page.getViewport({ scale: 1 });
        const scale = cssWidth / base.width;
        const ratio = window.devicePixelRatio || 1;
        const viewport = page.getViewport({ scale: scale * ratio });
        const canvas = el("canvas", { width: Math.round(viewport.width), height: Math.round(viewport.height) });
        canvas.style.width = `${cssWidth}px`;
        canvas.setAttribute("role", "img");
        canvas.setAttribute("aria-label", `Page ${n}`);
        await page.render({ canvasContext: canvas.getContext("2d"), canvas, viewport }).promise;
        return {
          wrap: el("div", { class: "page-wrap", "data-page": n }, canvas),
          cssWidth,
          cssHeight: base.height * scale,
          pointsWidth: base.width,
          pointsHeight: base.height,
        };
      },
    };
  }
  const url = URL.createObjectURL(new Blob([data], { type: mime || "image/png" }));
  const img = el("img", { class: "page", src: url, alt: "Page 1" });
  await img.decode();
  return {
    kind: "image",
    pageCount: 1,
    async render(n, cssWidth) {
      const page = img.cloneNode();
      page.alt = `Page ${n}`;
      page.style.width = `${cssWidth}px`;
      return {
        wrap: el("div", { class: "page-wrap", "data-page": n }, page),
        cssWidth,
        cssHeight: (img.naturalHeight * cssWidth) / img.naturalWidth,
        naturalWidth: img.naturalWidth,
        naturalHeight: img.naturalHeight,
      };
    },
  };
}

/** A box over a page, its rect (left, top, width, height) in fractions of the page's size
 * (so that it stays in place whatever size the page is drawn at), with a small tag. */
export function box(rect, { cls = "", colour = null, tag = "", title = "", data = {} } = {}) {
  const attrs = { class: `box ${cls}`, title: title || null, "aria-hidden": "true" };
  for (const [k, v] of Object.entries(data)) attrs[`data-${k}`] = v;
  const node = el("div", attrs, tag ? el("span", { class: "tag", style: colour ? { background: colour } : {} }, tag) : null);
  const pct = (v) => `${(v * 100).toFixed(3)}%`;
  Object.assign(node.style, {
    left: pct(rect.left),
    top: pct(rect.top),
    width: pct(rect.width),
    height: pct(rect.height),
  });
  if (colour) node.style.borderColor = colour;
  return node;
}

/** Fetch a URL (a signed blob URL or a data: URI) as bytes and its type. */
export async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`could not load ${url.slice(0, 60)}: HTTP ${response.status}`);
  return { bytes: new Uint8Array(await response.arrayBuffer()), mime: response.headers.get("content-type") || "" };
}
