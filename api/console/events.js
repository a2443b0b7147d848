// Server-Sent Events read from a fetch() body (EventSource cannot send an Authorization
// header). The format of the HTML standard: fields until a blank line, "data" lines joined
// by newlines, lines starting with ":" are comments (the server's keepalives).
"use strict";

window.SCEvents = (() => {
  const MAX_EVENT_CHARS = 1 << 20; // one event; a longer one ends the stream rather than fill memory

  class EventParser {
    constructor() {
      this.buffer = "";
      this.size = 0; // characters of the event being read
      this.event = { id: null, event: "message", data: [] };
    }

    // The events that ``text`` (the stream's next chunk) completes. One pass over the chunk:
    // a chunk of many short lines costs no more than one long line.
    feed(text) {
      const buffer = this.buffer + text;
      const events = [];
      const eol = /\r\n|\r|\n/g;
      let start = 0;
      let match;
      while ((match = eol.exec(buffer))) {
        if (match[0] === "\r" && match.index === buffer.length - 1) break; // maybe a \r\n cut in two
        const done = this.line(buffer.slice(start, match.index));
        start = eol.lastIndex;
        if (done) events.push(done);
      }
      this.buffer = buffer.slice(start);
      if (this.buffer.length + this.size > MAX_EVENT_CHARS) {
        throw new Error("The event stream sent an event too long to read");
      }
      return events;
    }

    line(line) {
      if (line === "") {
        const { id, event, data } = this.event;
        this.event = { id, event: "message", data: [] };
        this.size = 0;
        return data.length ? { id, event, data: data.join("\n") } : null;
      }
      if (line.startsWith(":")) return null;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      this.size += line.length;
      if (field === "data") this.event.data.push(value);
      else if (field === "event") this.event.event = value;
      else if (field === "id") this.event.id = value;
      return null;
    }
  }
  return { EventParser, MAX_EVENT_CHARS };
})();
