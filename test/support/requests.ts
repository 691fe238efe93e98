/**
 * A minimal valid job request, to override one field at a time. Its control image is on loopback
 * (the discard port, refused at once): the simulator fetches images, and tests never reach outside.
 */
export const validJobRequest = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  model_id: "sd15",
  controlnet_model: "canny",
  controlnet_type: "canny",
  prompt: "a lighthouse at dusk",
  control_image: "http://127.0.0.1:9/edges.png",
  ...overrides,
});
